//! `docs/fields.md` lists every lima.yaml field: this test derives the field paths from the
//! schema itself (`crates/limatype/src/yaml.rs`, read with `syn`) and fails when a field has
//! no row, or a row names a field the schema no longer has.
//!
//! Paths are written as upstream writes them: serde's names (`rename`, `rename_all =
//! "camelCase"`), `[]` after a list (`mounts[].9p.msize`). A field whose type is another
//! struct of the schema is expanded into that struct's fields; maps and scalars are leaves;
//! `#[serde(flatten)]` catch-alls (other drivers' `vmOpts`, other `osOpts`) have no row.

use std::collections::{BTreeMap, BTreeSet};

/// A struct of the schema: its serde-visible fields, in source order, as (name, type).
type Schema = BTreeMap<String, Vec<(String, syn::Type)>>;

/// `lower_snake` → `lowerCamel`, as serde's `rename_all = "camelCase"`.
fn camel_case(ident: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in ident.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The `#[serde(...)]` name-value pairs and flags of `attrs`, e.g. `rename = "9p"`, `flatten`.
fn serde_args(attrs: &[syn::Attribute]) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        // Unparsable serde arguments are left to the compiler; the names we need are simple.
        let _ = attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            if meta.input.peek(syn::Token![=]) {
                let value: syn::Expr = meta.value()?.parse()?;
                let text = match value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s),
                        ..
                    }) => Some(s.value()),
                    _ => None,
                };
                out.push((key, text));
            } else {
                out.push((key, None));
            }
            Ok(())
        });
    }
    out
}

/// Every named-field struct in `source` with its serde field names.
fn schema_of(source: &str) -> Result<Schema, syn::Error> {
    let file = syn::parse_file(source)?;
    let mut schema = Schema::new();
    for item in file.items {
        let syn::Item::Struct(s) = item else { continue };
        let syn::Fields::Named(named) = &s.fields else {
            continue;
        };
        let camel = serde_args(&s.attrs)
            .iter()
            .any(|(k, v)| k == "rename_all" && v.as_deref() == Some("camelCase"));
        let mut fields = Vec::new();
        for f in &named.named {
            let args = serde_args(&f.attrs);
            if args.iter().any(|(k, _)| k == "flatten" || k == "skip") {
                continue;
            }
            let ident = f.ident.as_ref().map(|i| i.to_string()).unwrap_or_default();
            let name = args
                .iter()
                .find(|(k, _)| k == "rename")
                .and_then(|(_, v)| v.clone())
                .unwrap_or_else(|| if camel { camel_case(&ident) } else { ident });
            fields.push((name, f.ty.clone()));
        }
        schema.insert(s.ident.to_string(), fields);
    }
    Ok(schema)
}

/// The last segment of a type path with its generic type arguments: `Option<Vec<T>>` →
/// (`Option`, [`Vec<T>`]).
fn split_type(ty: &syn::Type) -> Option<(String, Vec<syn::Type>)> {
    let syn::Type::Path(tp) = ty else { return None };
    let seg = tp.path.segments.last()?;
    let args = match &seg.arguments {
        syn::PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .filter_map(|a| match a {
                syn::GenericArgument::Type(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Some((seg.ident.to_string(), args))
}

/// Appends to `out` the paths under `prefix` for a value of type `ty`.
fn walk(schema: &Schema, prefix: &str, ty: &syn::Type, depth: usize, out: &mut BTreeSet<String>) {
    assert!(depth < 16, "the schema nests too deep at {prefix}");
    match split_type(ty) {
        Some((wrapper, args)) if (wrapper == "Option" || wrapper == "Box") && args.len() == 1 => {
            walk(schema, prefix, &args[0], depth + 1, out)
        }
        Some((list, args)) if list == "Vec" && args.len() == 1 => {
            walk(schema, &format!("{prefix}[]"), &args[0], depth + 1, out)
        }
        Some((name, _)) if schema.contains_key(&name) => {
            for (field, fty) in &schema[&name] {
                let path = if prefix.is_empty() {
                    field.clone()
                } else {
                    format!("{prefix}.{field}")
                };
                walk(schema, &path, fty, depth + 1, out);
            }
        }
        // A list of scalars is one field (`dns`, not `dns[]`).
        _ => {
            out.insert(prefix.trim_end_matches("[]").to_string());
        }
    }
}

/// Every lima.yaml field path of the schema in `yaml_rs`, from its root struct `LimaYaml`.
fn schema_paths(yaml_rs: &str) -> Result<BTreeSet<String>, syn::Error> {
    let schema = schema_of(yaml_rs)?;
    let mut out = BTreeSet::new();
    let root: syn::Type = syn::parse_str("LimaYaml")?;
    walk(&schema, "", &root, 0, &mut out);
    Ok(out)
}

/// The first column of every table row of `markdown` that is a backquoted field path.
fn doc_paths(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`'))
        .map(|(path, _)| path.to_string())
        .collect()
}

/// Disagreements between the schema's paths and the doc's rows, both ways, and duplicates.
fn problems(schema: &BTreeSet<String>, doc: &[String]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for p in doc {
        if !seen.insert(p.clone()) {
            out.push(format!("`{p}`: more than one row"));
        }
    }
    for p in schema.difference(&seen) {
        out.push(format!(
            "`{p}`: a field of limatype's schema with no row in docs/fields.md"
        ));
    }
    for p in seen.difference(schema) {
        out.push(format!(
            "`{p}`: a row of docs/fields.md for a field limatype's schema does not have"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct LimaYaml {
            pub vm_opts: Option<VmOpts>,
            pub mounts: Option<Vec<Mount>>,
            #[serde(rename = "loadDotSSHPubKeys")]
            pub load_dot: Option<bool>,
            pub env: Option<BTreeMap<String, String>>,
        }
        pub struct VmOpts {
            pub qemu: Option<QemuOpts>,
            #[serde(flatten)]
            pub other: BTreeMap<String, serde_yaml::Value>,
        }
        #[serde(rename_all = "camelCase")]
        pub struct QemuOpts { pub minimum_version: Option<String> }
        #[serde(rename_all = "camelCase")]
        pub struct Mount {
            pub location: String,
            #[serde(rename = "9p")]
            pub nine_p: Option<NineP>,
        }
        pub struct NineP { pub msize: Option<String> }
    "#;

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn paths_follow_serde_names_lists_and_nesting() {
        assert_eq!(
            schema_paths(SAMPLE).unwrap(),
            set(&[
                "env",
                "loadDotSSHPubKeys",
                "mounts[].9p.msize",
                "mounts[].location",
                "vmOpts.qemu.minimumVersion",
            ])
        );
    }

    #[test]
    fn a_missing_row_an_extra_row_and_a_duplicate_all_fail() {
        let schema = set(&["a", "b"]);
        let doc = vec!["a".to_string(), "c".to_string(), "a".to_string()];
        let p = problems(&schema, &doc);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p.iter().any(|m| m.starts_with("`b`: a field")));
        assert!(p.iter().any(|m| m.starts_with("`c`: a row")));
        assert!(p.iter().any(|m| m.starts_with("`a`: more than one row")));
    }

    #[test]
    fn doc_rows_are_backquoted_first_columns() {
        let md = "| field | status |\n| --- | --- |\n| `cpus` | acted on |\n| not a row |\n";
        assert_eq!(doc_paths(md), vec!["cpus".to_string()]);
    }

    #[test]
    fn docs_fields_md_has_a_row_for_every_schema_field() {
        let root = crate::project_root();
        let yaml_rs = std::fs::read_to_string(root.join("crates/limatype/src/yaml.rs")).unwrap();
        let doc = std::fs::read_to_string(root.join("docs/fields.md")).unwrap();
        let schema = schema_paths(&yaml_rs).unwrap();
        assert!(schema.len() > 100, "only {} fields found", schema.len());
        let p = problems(&schema, &doc_paths(&doc));
        assert!(p.is_empty(), "docs/fields.md:\n{}", p.join("\n"));
    }

    /// Prints the schema's paths (`cargo test -p xtask print_schema_paths -- --ignored
    /// --nocapture`), to start a row for a new field.
    #[test]
    #[ignore]
    fn print_schema_paths() {
        let root = crate::project_root();
        let yaml_rs = std::fs::read_to_string(root.join("crates/limatype/src/yaml.rs")).unwrap();
        for p in schema_paths(&yaml_rs).unwrap() {
            println!("{p}");
        }
    }
}
