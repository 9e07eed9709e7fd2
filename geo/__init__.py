"""Geography: INEGI boundaries and localities, and coverage analysis."""
