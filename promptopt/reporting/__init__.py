"""Reports of runs and prompt diffs, from run folders and diff reports alone (no model call).

- `diff`: the diff report's data model (two prompts scored on the same examples) and its JSON.
- `run_files`: what a run report shows, read from a run folder's typed records.
- `view`: the view model, `DiffView` and `RunView`: every figure and row, formatted once.
- `markdown`, `html`, `terminal`: renderers of the views (jinja2 templates in `templates/`
  for Markdown and HTML, rich for the terminal).
- `write`: report.md and report.html into a run folder.
"""
