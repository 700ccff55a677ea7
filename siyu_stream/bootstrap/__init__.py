"""`siyu-stream bootstrap`: every customer's state built from a brand's history, written
where the worker restores it from, so that workers go live on the history (docs/go-live.md)."""
