//! `template.yaml` is exactly what `template.base.yaml` and the declarations
//! of the functions and providers render (`mailmind::deploy::template`).
//!
//! Render it again after changing the base, a function or a provider:
//! `UPDATE_TEMPLATE=1 cargo test -p mailmind-tests --test suite template`

use mailmind_tests::repo_root;

#[test]
fn committed_template_is_what_the_declarations_render() {
    let root = repo_root();
    let base = std::fs::read_to_string(root.join("template.base.yaml")).expect("template.base.yaml");
    let rendered = mailmind::deploy::template::render(&base).unwrap_or_else(|e| panic!("{e}"));
    let path = root.join("template.yaml");
    if std::env::var_os("UPDATE_TEMPLATE").is_some_and(|v| v == "1") {
        std::fs::write(&path, &rendered).expect("write template.yaml");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != rendered {
        let line = committed
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(rendered.lines().count()))
            + 1;
        panic!(
            "template.yaml differs from what template.base.yaml and the declarations render \
             (first at line {line}); render it again with\n  \
             UPDATE_TEMPLATE=1 cargo test -p mailmind-tests --test suite template"
        );
    }
}

/// The template a person edits stays short: what repeats per function or
/// provider belongs in the declarations, which render it.
#[test]
fn the_hand_edited_base_stays_under_900_lines() {
    let base = std::fs::read_to_string(repo_root().join("template.base.yaml")).expect("template.base.yaml");
    let lines = base.lines().count();
    assert!(
        lines <= 900,
        "template.base.yaml has {lines} lines; move what repeats into shared/src/deploy (declarations and renderer)"
    );
}
