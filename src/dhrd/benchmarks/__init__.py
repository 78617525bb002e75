"""Measurements: ``dhrd benchmark`` (accuracy and throughput), its engine rows, training throughput, CLI start-up."""
