"""Running checks on several cores or a Ray cluster, and checkpoints of a long search.

* :mod:`.units` — a check as a picklable work unit, run in a worker process;
* :mod:`.backend` — where work units run: local processes or Ray;
* :mod:`.matrix` — independent checks of a version x scenario matrix in parallel;
* :mod:`.split` — one tree search (dfs, dpor) split into subtrees across workers;
* :mod:`.checkpoint` — saving a stopped search and resuming it;
* :mod:`.progress` — the progress bar and Knuth's estimate of the tree left.
"""
