//! hoop protocol adapter for kafka (not yet implemented; see the project's issues).
