//! For every template in the bundled `templates/` (top level of the repository), the filled
//! and validated config under fixed host facts is an insta snapshot, so a change to any
//! default or template shows as a reviewed snapshot diff (`cargo insta review`; new templates:
//! `INSTA_UPDATE=always cargo test -p limaload --test template_snapshots`, then review).

use std::path::Path;

use limaload::{list_templates, load, LoadOptions};

fn opts(template_dir: &Path) -> LoadOptions {
    LoadOptions {
        host: limatype::HostFacts {
            os: limatype::Os::Linux,
            arch: limatype::Arch::X86_64,
            cpus: 4,
            memory: limatype::ByteSize(16 << 30),
            user_name: "user".into(),
            user_comment: "User".into(),
            uid: 1000,
            home: "/home/user".into(),
            timezone: "Etc/UTC".into(),
            machine_id: "0123456789abcdef".into(),
            lima_home: "/home/user/.lima".into(),
            temp_dir: "/tmp".into(),
        },
        template_dirs: vec![template_dir.to_path_buf()],
        name: None,
        use_config_files: false,
        use_default_base: false,
    }
}

#[test]
fn bundled_templates_fill_and_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let templates = list_templates(std::slice::from_ref(&dir));
    if templates.is_empty() {
        eprintln!("no templates in {}; nothing to snapshot", dir.display());
        return;
    }
    let mut failures = Vec::new();
    for (name, _) in templates {
        let mut o = opts(&dir);
        o.name = Some(name.replace('/', "-"));
        match load(&format!("template:{name}"), &o) {
            Ok(loaded) => {
                insta::assert_snapshot!(
                    format!("template-{}", name.replace('/', "-")),
                    loaded.config.to_yaml()
                );
            }
            Err(e) => failures.push(format!("template:{name}:\n{e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
