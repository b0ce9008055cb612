//! `github:ORG[/REPO][/PATH][@BRANCH]` template locators, as upstream's `limatmpl/github.go`:
//! mapped to a `https://raw.githubusercontent.com/ORG/REPO/BRANCH/PATH` URL that is then read
//! like any `https://` locator. REPO defaults to ORG, PATH to `.lima.yaml` (a trailing `/` is a
//! directory holding one; a file name without extension gets `.yaml`), BRANCH to the
//! repository's default branch (GitHub's API, with `GH_TOKEN`/`GITHUB_TOKEN` when set). A
//! `.yaml`/`.yml` file holding one line without blanks or colons is a symlink to that path;
//! in a `github:ORG//...` repository it may hold a `github:ORG/...` redirect instead.

/// Why a `github:` locator could not be mapped to a URL.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error("github: URL must contain at least an ORG, got `{0}`")]
    NoOrg(String),
    #[error("repo `{repo}` in github: URL `{input}` escapes the org")]
    RepoEscapes { repo: String, input: String },
    #[error("path `{path}` in github: URL `{input}` escapes the repository")]
    PathEscapes { path: String, input: String },
    #[error("branch `{branch}` in github: URL `{input}` escapes the repository")]
    BranchEscapes { branch: String, input: String },
    #[error("symlink target `{target}` in `{path}` escapes the repository")]
    SymlinkEscapes { target: String, path: String },
    #[error("failed to get default branch for {org}/{repo}: {reason}")]
    DefaultBranch {
        org: String,
        repo: String,
        reason: String,
    },
    #[error("failed to fetch {url}: {source}")]
    Fetch {
        url: String,
        #[source]
        source: HttpError,
    },
    #[error("file `{url}` not found or inaccessible: status {status}")]
    Status { url: String, status: u16 },
    #[error("redirect `{redirect}` is not a `github:{org}` URL (from `{url}`)")]
    BadRedirect {
        redirect: String,
        org: String,
        url: String,
    },
    #[error("redirect `{redirect}` must not include a branch/tag/sha (from `{url}`)")]
    RedirectWithBranch { redirect: String, url: String },
}

/// The file GitHub serves for `github:ORG` and a directory's `github:ORG/REPO/DIR/`.
pub const DEFAULT_FILENAME: &str = ".lima.yaml";

/// A `github:` locator taken apart, defaults applied (all but the branch, which may need
/// GitHub's API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubRef {
    pub org: String,
    pub repo: String,
    pub path: String,
    /// `@BRANCH` (a branch, tag or commit); `None` for the default branch.
    pub branch: Option<String>,
}

/// Parses what follows `github:` (`ORG/REPO/PATH@BRANCH`), refusing a REPO, PATH or BRANCH that
/// climbs out of the repository with `..` (a redirect could otherwise reach another org).
pub fn parse(input: &str) -> Result<GitHubRef, GitHubError> {
    let (input, branch) = match input.split_once('@') {
        Some((i, b)) => (i, Some(b)),
        None => (input, None),
    };
    let mut parts: Vec<&str> = input.split('/').collect();
    while parts.len() < 2 {
        parts.push("");
    }
    let org = parts[0];
    if org.is_empty() {
        return Err(GitHubError::NoOrg(input.to_string()));
    }
    let repo = if parts[1].is_empty() { org } else { parts[1] };
    let mut path = parts[2..].join("/");
    if repo == ".." {
        return Err(GitHubError::RepoEscapes {
            repo: repo.into(),
            input: input.into(),
        });
    }
    if escapes_repo(&path) {
        return Err(GitHubError::PathEscapes {
            path,
            input: input.into(),
        });
    }
    if let Some(b) = branch.filter(|b| escapes_repo(b)) {
        return Err(GitHubError::BranchEscapes {
            branch: b.into(),
            input: input.into(),
        });
    }
    if path.is_empty() {
        path = DEFAULT_FILENAME.into();
    } else {
        if path.ends_with('/') {
            path.push_str(DEFAULT_FILENAME);
        }
        // A leading dot is a hidden file's, not an extension.
        let name = base(&path);
        if !name.chars().skip(1).any(|c| c == '.') {
            path.push_str(".yaml");
        }
    }
    Ok(GitHubRef {
        org: org.into(),
        repo: repo.into(),
        path,
        branch: branch.filter(|b| !b.is_empty()).map(Into::into),
    })
}

/// `https://raw.githubusercontent.com/ORG/REPO/BRANCH/PATH`, the path cleaned so no `..` is
/// left for the server to resolve.
pub fn raw_url(org: &str, repo: &str, branch: &str, path: &str) -> String {
    format!(
        "https://raw.githubusercontent.com/{org}/{repo}/{branch}/{}",
        clean(path)
    )
}

/// Go's `path.Clean` for the relative paths of a repository.
fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." if out.last().is_some_and(|l| *l != "..") => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    if out.is_empty() {
        ".".into()
    } else {
        out.join("/")
    }
}

/// Go's `path.Base`: the last non-empty segment.
fn base(p: &str) -> &str {
    p.trim_end_matches('/').rsplit('/').next().unwrap_or("")
}

/// Whether the cleaned path climbs above the repository root.
fn escapes_repo(p: &str) -> bool {
    let c = clean(p);
    c == ".." || c.starts_with("../")
}

/// A symlink's target, relative to the directory of the file holding it, kept inside the
/// repository.
fn symlink_target(path: &str, target: &str) -> Result<String, GitHubError> {
    let dir = match path.rsplit_once('/') {
        Some((d, _)) => d,
        None => "",
    };
    let resolved = clean(&format!("{dir}/{target}"));
    if escapes_repo(&resolved) {
        return Err(GitHubError::SymlinkEscapes {
            target: target.into(),
            path: path.into(),
        });
    }
    Ok(resolved)
}

/// A GET that got no answer (or an unreadable one).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Request(#[source] Box<ureq::Error>),
    #[error("{0}")]
    Read(#[source] std::io::Error),
}

/// What [`transform`] needs from HTTP: GET `url` (with GitHub's API headers when `api`),
/// giving the status and up to 1 MiB of the body; Err for no answer at all.
pub trait Http {
    fn get(&self, url: &str, api: bool) -> Result<(u16, String), HttpError>;
}

/// `github:` locators over the network through `ureq`, with a timeout, so an unreachable
/// GitHub fails instead of hanging.
pub struct Ureq;

impl Http for Ureq {
    fn get(&self, url: &str, api: bool) -> Result<(u16, String), HttpError> {
        use std::io::Read;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        let mut req = agent.get(url).header("User-Agent", "lima");
        if api {
            req = req.header("Accept", "application/vnd.github.v3+json");
            let token = [std::env::var("GH_TOKEN"), std::env::var("GITHUB_TOKEN")]
                .into_iter()
                .flatten()
                .find(|t| !t.is_empty());
            if let Some(t) = token {
                req = req.header("Authorization", format!("token {t}"));
            }
        }
        let resp = req.call().map_err(|e| HttpError::Request(Box::new(e)))?;
        let status = resp.status().as_u16();
        let mut body = String::new();
        resp.into_body()
            .into_reader()
            .take(1 << 20)
            .read_to_string(&mut body)
            .map_err(HttpError::Read)?;
        Ok((status, body))
    }
}

/// The repository's default branch, from GitHub's API.
fn default_branch(http: &dyn Http, org: &str, repo: &str) -> Result<String, GitHubError> {
    let fail = |reason: String| GitHubError::DefaultBranch {
        org: org.into(),
        repo: repo.into(),
        reason,
    };
    let api = format!("https://api.github.com/repos/{org}/{repo}");
    let (status, body) = http
        .get(&api, true)
        .map_err(|e| fail(format!("failed to query GitHub API: {e}")))?;
    if status != 200 {
        return Err(fail(format!("GitHub API returned status {status}: {body}")));
    }
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|e| fail(format!("failed to parse GitHub API response: {e}")))?;
    match v.get("default_branch").and_then(|b| b.as_str()) {
        Some(b) if !b.is_empty() => Ok(b.into()),
        _ => Err(fail(format!(
            "repository {org}/{repo} has no default branch"
        ))),
    }
}

/// What follows `github:` mapped to what to read next: a raw.githubusercontent.com URL, or (a
/// redirect file in a `github:ORG//` repository) another `github:` locator to map again.
pub fn transform(input: &str, http: &dyn Http) -> Result<String, GitHubError> {
    let r = parse(input)?;
    let branch = match &r.branch {
        Some(b) => b.clone(),
        None => default_branch(http, &r.org, &r.repo)?,
    };
    let ext = r.path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    if matches!(ext.as_deref(), Some("yaml" | "yml")) {
        return resolve_symlink(http, &r, &branch);
    }
    Ok(raw_url(&r.org, &r.repo, &branch, &r.path))
}

/// Upstream's `resolveGitHubSymlink`: the file's first KiB decides whether it is a symlink
/// (one line, no blanks or colons) or, in a `github:ORG//` repository, a `github:` redirect.
fn resolve_symlink(http: &dyn Http, r: &GitHubRef, branch: &str) -> Result<String, GitHubError> {
    let url = raw_url(&r.org, &r.repo, branch, &r.path);
    let (status, body) = http.get(&url, false).map_err(|source| GitHubError::Fetch {
        url: url.clone(),
        source,
    })?;
    // A branch or tag of github:ORG// that the file does not exist in: the default branch's
    // copy may redirect elsewhere, keeping the branch.
    if status == 404 && r.repo == r.org {
        if let Ok(default) = default_branch(http, &r.org, &r.repo) {
            let url = raw_url(&r.org, &r.repo, &default, &r.path);
            let (status, body) = http.get(&url, false).map_err(|source| GitHubError::Fetch {
                url: url.clone(),
                source,
            })?;
            if status != 200 {
                return Err(GitHubError::Status { url, status });
            }
            return redirect(&body, &r.org, r.branch.as_deref(), &url);
        }
    }
    if status != 200 {
        return Err(GitHubError::Status { url, status });
    }
    let content: String = body.chars().take(1024).collect();
    if r.repo == r.org && content.starts_with("github:") {
        return redirect(&content, &r.org, r.branch.as_deref(), &url);
    }
    let path = if content.is_empty() || content.contains(['\n', ' ', ':']) {
        r.path.clone()
    } else {
        symlink_target(&r.path, &content)?
    };
    Ok(raw_url(&r.org, &r.repo, branch, &path))
}

/// Upstream's `validateGitHubRedirect`: the first line must be a `github:ORG/...` locator of
/// the same org without a branch; the requested branch (if any) is carried over.
fn redirect(body: &str, org: &str, branch: Option<&str>, url: &str) -> Result<String, GitHubError> {
    let line = body.lines().next().unwrap_or("").trim();
    if !line.starts_with(&format!("github:{org}/")) {
        return Err(GitHubError::BadRedirect {
            redirect: line.into(),
            org: org.into(),
            url: url.into(),
        });
    }
    if line.contains('@') {
        return Err(GitHubError::RedirectWithBranch {
            redirect: line.into(),
            url: url.into(),
        });
    }
    Ok(match branch {
        Some(b) => format!("{line}@{b}"),
        None => line.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parsed(input: &str) -> (String, String, String, Option<String>) {
        let r = parse(input).unwrap();
        (r.org, r.repo, r.path, r.branch)
    }

    fn t(
        org: &str,
        repo: &str,
        path: &str,
        branch: Option<&str>,
    ) -> (String, String, String, Option<String>) {
        (org.into(), repo.into(), path.into(), branch.map(Into::into))
    }

    /// Every form upstream documents for `limactl start github:...`.
    #[test]
    fn every_upstream_form_maps_as_upstream() {
        assert_eq!(parsed("ORG"), t("ORG", "ORG", ".lima.yaml", None));
        assert_eq!(parsed("ORG/REPO"), t("ORG", "REPO", ".lima.yaml", None));
        assert_eq!(
            parsed("ORG/REPO@v1.0"),
            t("ORG", "REPO", ".lima.yaml", Some("v1.0"))
        );
        assert_eq!(parsed("ORG//docker"), t("ORG", "ORG", "docker.yaml", None));
        assert_eq!(
            parsed("ORG/REPO/dir/"),
            t("ORG", "REPO", "dir/.lima.yaml", None)
        );
        assert_eq!(
            parsed("ORG/REPO/dir/dev"),
            t("ORG", "REPO", "dir/dev.yaml", None)
        );
        assert_eq!(
            parsed("ORG/REPO/dev.yml@main"),
            t("ORG", "REPO", "dev.yml", Some("main"))
        );
        assert_eq!(
            parsed("ORG/REPO/README.md"),
            t("ORG", "REPO", "README.md", None)
        );
        assert_eq!(
            parsed("ORG/REPO/.hidden"),
            t("ORG", "REPO", ".hidden.yaml", None)
        );
        assert_eq!(parsed("ORG/REPO@"), t("ORG", "REPO", ".lima.yaml", None));
        assert_eq!(
            raw_url("lima-vm", "lima", "main", "docs/../README.md"),
            "https://raw.githubusercontent.com/lima-vm/lima/main/README.md"
        );
    }

    #[test]
    fn climbing_out_of_the_repository_is_refused() {
        let e = |i: &str| parse(i).unwrap_err().to_string();
        assert!(e("").contains("at least an ORG"));
        assert!(e("/REPO").contains("at least an ORG"));
        assert!(e("lima-vm/lima/../../../torvalds/linux/master/evil.yaml")
            .contains("escapes the repository"));
        assert!(e("lima-vm/../../torvalds/linux/master/evil.yaml").contains("escapes the org"));
        assert!(e("lima-vm/lima/README.md@../../torvalds/linux/master")
            .contains("escapes the repository"));
        assert!(parse("lima-vm/lima/docs/../README.md@main").is_ok());
        assert_eq!(
            symlink_target("dir/config.yaml", "other.yaml").unwrap(),
            "dir/other.yaml"
        );
        assert_eq!(
            symlink_target(".lima.yaml", "sub/x.yaml").unwrap(),
            "sub/x.yaml"
        );
        assert_eq!(
            symlink_target("dir/config.yaml", "../top.yaml").unwrap(),
            "top.yaml"
        );
        assert!(symlink_target(".lima.yaml", "../evil.yaml").is_err());
        assert!(symlink_target("dir/c.yaml", "../../../../torvalds/linux/master/README").is_err());
    }

    /// Canned answers by URL; another raw.githubusercontent.com URL is a 404, another API URL
    /// no answer at all.
    struct Fake(HashMap<&'static str, (u16, &'static str)>);

    impl Http for Fake {
        fn get(&self, url: &str, _api: bool) -> Result<(u16, String), HttpError> {
            match self.0.get(url) {
                Some((s, b)) => Ok((*s, b.to_string())),
                None if url.starts_with(RAW) => Ok((404, "404: Not Found".into())),
                None => Err(refused()),
            }
        }
    }

    const RAW: &str = "https://raw.githubusercontent.com";

    pub(crate) fn refused() -> HttpError {
        HttpError::Read(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ))
    }

    #[test]
    fn default_branch_symlinks_and_redirects() {
        let fake = Fake(HashMap::from([
            (
                "https://api.github.com/repos/o/r",
                (200, r#"{"default_branch":"trunk"}"#),
            ),
            (
                "https://raw.githubusercontent.com/o/r/trunk/.lima.yaml",
                (200, "dev/x.yaml"),
            ),
            (
                "https://raw.githubusercontent.com/o/r/v1/plain.yaml",
                (200, "images: []\n"),
            ),
            (
                "https://api.github.com/repos/o/o",
                (200, r#"{"default_branch":"main"}"#),
            ),
            (
                "https://raw.githubusercontent.com/o/o/main/k8s.yaml",
                (200, "github:o/k8s\n"),
            ),
            (
                "https://raw.githubusercontent.com/o/o/v2/bad.yaml",
                (200, "github:other/x\n"),
            ),
        ]));
        assert_eq!(
            transform("o/r", &fake).unwrap(),
            format!("{RAW}/o/r/trunk/dev/x.yaml")
        );
        assert_eq!(
            transform("o/r/plain@v1", &fake).unwrap(),
            format!("{RAW}/o/r/v1/plain.yaml")
        );
        // Not a YAML file: no symlink check, no request beyond the branch's.
        assert_eq!(
            transform("o/r/a.sh@v1", &fake).unwrap(),
            format!("{RAW}/o/r/v1/a.sh")
        );
        assert_eq!(transform("o//k8s", &fake).unwrap(), "github:o/k8s");
        // Missing on the tag: the default branch's redirect, with the tag carried over.
        assert_eq!(transform("o//k8s@v2", &fake).unwrap(), "github:o/k8s@v2");
        let e = transform("o//bad@v2", &fake).unwrap_err().to_string();
        assert!(e.contains("is not a `github:o` URL"), "{e}");
        let e = transform("x/y", &fake).unwrap_err().to_string();
        assert!(
            e.contains("failed to get default branch for x/y") && e.contains("connection refused"),
            "{e}"
        );
    }
}
