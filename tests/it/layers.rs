//! The layering of `src/`: `lib.rs`'s Layout doc lists the modules bottom up, and no code
//! in a module imports one listed after it (a doc comment may point up, to say who uses a
//! thing). Fails naming each import that runs back up.

use std::path::Path;

/// The modules in the order the Layout doc lists them, bottom layer first.
fn layout(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! - "))
        .filter_map(|l| {
            let l = l.strip_prefix("[`").or_else(|| l.strip_prefix('`'))?;
            l.split('`').next().map(str::to_string)
        })
        .collect()
}

/// The `crate::<module>` paths named in the code of `text`, comments left out.
fn crate_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_import_runs_back_up_a_layer() {
    let src = crate::support::repo_root().join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let order = layout(&lib);
    assert!(order.len() >= 25, "the Layout doc lists {order:?}");
    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut upward = Vec::new();
    let mut unlisted = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_string_lossy();
        let top = top.trim_end_matches(".rs");
        if matches!(top, "lib" | "main") {
            continue;
        }
        let Some(mine) = rank(top) else {
            unlisted.push(top.to_string());
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for used in crate_paths(&text) {
            if rank(&used).is_some_and(|theirs| theirs > mine) {
                upward.push(format!("{} -> {used}", rel.display()));
            }
        }
    }
    unlisted.sort();
    unlisted.dedup();
    assert_eq!(
        unlisted,
        Vec::<String>::new(),
        "modules missing from the Layout doc"
    );
    upward.sort();
    upward.dedup();
    assert_eq!(
        upward,
        Vec::<String>::new(),
        "imports that run back up a layer"
    );
}
