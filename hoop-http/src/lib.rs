//! hoop protocol adapter for http (not yet implemented; see the project's issues).
