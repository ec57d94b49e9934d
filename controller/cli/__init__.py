"""The `meshlet` command line: one module per verb, loaded lazily."""
