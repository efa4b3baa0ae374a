"""Scoring separations: BSSEval v4, cheap training metrics, gains, reports and tables."""
