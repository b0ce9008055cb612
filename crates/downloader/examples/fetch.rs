//! `cargo run -p downloader --example fetch -- LOCATION DEST [DIGEST] [--decompress]`: one
//! download through the default cache (for trying progress output and the cache by hand).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let decompress = args.iter().any(|a| a == "--decompress");
    let pos: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (Some(location), Some(dest)) = (pos.first(), pos.get(1)) else {
        return Err("usage: fetch LOCATION DEST [DIGEST] [--decompress]".into());
    };
    let d = downloader::Downloader::with_default_cache()?;
    let out = d.download(&downloader::Request {
        location,
        dest: Some(std::path::Path::new(dest.as_str())),
        digest: pos.get(2).map(|s| s.as_str()),
        decompress,
        description: None,
    })?;
    println!("{:?} (cache: {:?})", out.status, out.cache_path);
    Ok(())
}
