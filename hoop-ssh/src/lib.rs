//! hoop protocol adapter for ssh (not yet implemented; see the project's issues).
