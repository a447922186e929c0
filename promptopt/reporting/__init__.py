"""What a person reads: run and diff reports from one view model, as terminal (rich), Markdown
and self-contained HTML."""
