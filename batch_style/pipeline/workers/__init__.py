"""Running units: dispatch, the worker processes (one per GPU or CPU worker) and their memory."""
