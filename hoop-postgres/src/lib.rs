//! hoop protocol adapter for postgres (not yet implemented; see the project's issues).
