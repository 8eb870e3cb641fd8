//! Models named by what they are: a model's digest, the sha256 of its weights (the GGUF
//! file, the same on every machine that holds it; read from Ollama by
//! [`crate::inference::weights`]), and a model name pinned to one, `name@sha256:<hex>`.
//!
//! On the wire a digest is its 64 lowercase hex digits, without the `sha256:` prefix.

/// A model name with the digest it is pinned to, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPin {
    /// The name, e.g. `gemma3:270m`.
    pub name: String,
    /// The digest the provider's model must have, 64 lowercase hex digits.
    pub digest: Option<String>,
}

/// Check a digest: 64 lowercase hex digits.
pub fn check_digest(d: &str) -> Result<(), String> {
    if d.len() == 64
        && d.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err("a model digest must be 64 lowercase hex digits".into())
    }
}

/// A digest as an agent gives it, `sha256:<hex>` or the bare hex (either case), in the
/// wire form.
pub fn parse_digest(s: &str) -> Result<String, String> {
    let s = s.trim();
    let hex = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
    check_digest(&hex)?;
    Ok(hex)
}

/// Split `name@sha256:<hex>` into the name and its digest; a name without `@` is not
/// pinned.
pub fn parse_pin(model: &str) -> Result<ModelPin, String> {
    match model.trim().rsplit_once('@') {
        None => Ok(ModelPin {
            name: model.trim().to_string(),
            digest: None,
        }),
        Some((name, digest)) => {
            if !digest.starts_with("sha256:") {
                return Err("a pinned model is name@sha256:<64 hex digits>".into());
            }
            Ok(ModelPin {
                name: name.trim().to_string(),
                digest: Some(parse_digest(digest)?),
            })
        }
    }
}

/// How a pinned model is shown: `name@sha256:<hex>`, or the name alone.
pub fn show_pin(name: &str, digest: Option<&str>) -> String {
    match digest {
        Some(d) => format!("{name}@sha256:{d}"),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "1292ed8bf37a0a9be6426f285ab6e549f8c92b5538e3fdb2e48f2b3e5db4667c";

    #[test]
    fn a_pinned_name_splits_into_name_and_digest() {
        let p = parse_pin(&format!("gemma3:270m@sha256:{}", D.to_uppercase())).unwrap();
        assert_eq!(p.name, "gemma3:270m");
        assert_eq!(p.digest.as_deref(), Some(D));
        let p = parse_pin("gemma3:270m").unwrap();
        assert_eq!((p.name.as_str(), p.digest), ("gemma3:270m", None));
        assert_eq!(show_pin("m", Some(D)), format!("m@sha256:{D}"));
    }

    #[test]
    fn malformed_digests_are_refused() {
        assert!(parse_pin(&format!("m@{D}")).is_err(), "no sha256: prefix");
        assert!(parse_pin("m@sha256:abc").is_err(), "too short");
        assert!(
            parse_pin(&format!("m@sha256:{}g", &D[1..])).is_err(),
            "not hex"
        );
        assert!(
            check_digest(&D.to_uppercase()).is_err(),
            "the wire form is lowercase"
        );
        assert_eq!(parse_digest(&format!("sha256:{D}")).unwrap(), D);
        assert_eq!(parse_digest(D).unwrap(), D);
    }
}
