"""One module per flow. Each has `prompt(ctx, step)` (ask the step's question again, used by `0`
back) and `handle(ctx, step, text)` (an answer to that step); `begin(ctx, …)` starts it.
`run.py` holds the table of flows and the "who is this about" step shared by all of them."""
