"""One runner per runtime, used by verification and benchmarking alike."""
