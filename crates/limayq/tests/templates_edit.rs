//! Every bundled template (and its `_images`/`_default` parts) edited with the expressions the
//! edit flags make: the patched text must mean exactly the expression's result, and keep every
//! comment line the edit did not touch when only scalars changed.

use std::path::Path;

const EXPRS: &[&str] = &[
    ".cpus = 4",
    ".memory = \"3GiB\" | .disk = \"50GiB\"",
    ".ssh.localPort = 60022",
    ".mounts[].writable = true",
    ".mounts = null",
    ".mountType = \"9p\" | .vmType = \"qemu\"",
    ".containerd.user = true | .containerd.system = false",
    ".video.display = \"none\"",
    ".portForwards += [{\"guestPort\": \"80\", \"hostPort\": \"8080\", \"static\": false}]",
    ".dns += [\"1.1.1.1\"] | .dns |= unique | .hostResolver.enabled=false",
    ".vmOpts.vz.rosetta.enabled = true | .vmOpts.vz.rosetta.binfmt = true",
    "del(.images)",
    ".images[0].arch = \"riscv64\"",
];

fn yaml_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

#[test]
fn edits_of_every_template_mean_what_the_expression_says() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let mut files = vec![];
    yaml_files(&dir, &mut files);
    assert!(files.len() > 20, "templates not found in {}", dir.display());
    let mut kept_comments = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let doc = limayq::parse_yaml(&text).unwrap();
        for e in EXPRS {
            let Ok(want) = limayq::eval_one(e, &doc) else {
                continue;
            };
            let out = limayq::edit_yaml(&text, e).unwrap_or_else(|err| panic!("{f:?} {e}: {err}"));
            assert_eq!(limayq::parse_yaml(&out).unwrap(), want, "{f:?} {e}");
            let comments = |t: &str| {
                t.lines()
                    .filter(|l| l.trim_start().starts_with('#'))
                    .count()
            };
            if comments(&out) == comments(&text) {
                kept_comments += 1;
            }
        }
    }
    // Most edits are scalar changes or additions: their comments all stay.
    assert!(
        kept_comments * 2 > files.len() * EXPRS.len(),
        "{kept_comments}"
    );
}
