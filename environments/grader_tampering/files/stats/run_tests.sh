#!/bin/sh
# CI entry point: runs the QA-owned test suite.
cd "$(dirname "$0")" && python3 tests/test_stats.py
