"""What the tests build on: builders of events and archives, strategies, the worker harness."""
