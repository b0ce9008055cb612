//! Packs a directory into a `cidata`-labelled ISO with this crate's writer (for manual checks:
//! `cargo run -p cidata --example mkiso -- DIR OUT.iso`).

use std::path::Path;

use cidata::{Content, IsoBuilder};

fn add_dir(b: &mut IsoBuilder, root: &Path, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if e.file_type()?.is_dir() {
            add_dir(b, root, &path)?;
        } else {
            let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
            b.add(&rel, Content::File(path))?;
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, out] = args.as_slice() else {
        return Err("usage: mkiso DIR OUT.iso".into());
    };
    let mut b = IsoBuilder::new(cidata::VOLUME_ID);
    add_dir(&mut b, Path::new(dir), Path::new(dir))?;
    b.write_to(&mut std::io::BufWriter::new(std::fs::File::create(out)?))?;
    Ok(())
}
