"""What the book computes from run records, one idea a module, each importing only those above
it: `grids` (the runs each table needs), `stats` (intervals and verdicts, from scipy), `report`
(collecting runs; provenance and summary tables), `tables` (the paper's tables beside ours),
`claims` (the seven claims' scorecard), `plots` (the book's seaborn figures)."""
