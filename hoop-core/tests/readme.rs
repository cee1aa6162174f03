//! The README's "Build your own proxy" code is the crate-level example of hoop-core, which
//! the doctests compile: this test keeps the two identical.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

fn readme_block() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = readme
        .split("## Build your own proxy")
        .nth(1)
        .expect("section");
    let code = section.split("```rust\n").nth(1).expect("code block");
    code.split("\n```").next().unwrap().to_owned()
}

fn lib_doc_block() -> String {
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let section = lib
        .split("//! ## Build your own proxy")
        .nth(1)
        .expect("section");
    let code = section.split("//! ```no_run\n").nth(1).expect("code block");
    let code = code.split("//! ```\n").next().unwrap();
    code.lines()
        .map(|l| {
            l.strip_prefix("//! ")
                .unwrap_or(l.strip_prefix("//!").unwrap_or(l))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn readme_example_is_the_compiled_one() {
    assert_eq!(readme_block().trim(), lib_doc_block().trim());
}
