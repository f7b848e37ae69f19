"""The run folder's state: its layout, lock, ledger, events, progress and snapshots."""
