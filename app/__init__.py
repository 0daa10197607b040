"""runyard: run dbt and SQLMesh projects on a schedule."""

__version__ = "0.1.0"
