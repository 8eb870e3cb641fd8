//! What a provider serves and on which terms: its models, its price, how many jobs it runs
//! at once, and (feature `harness` only) the test switch that tampers with its output.

#[cfg(feature = "harness")]
use super::value::parse_bool;
use super::value::{invalid, parse_list, parse_num, parse_usdc, ConfigError, Lookup};

/// A provider's terms.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// `PROVIDER_MODELS`: models to serve; empty means every model the backend lists.
    pub models: Vec<String>,
    /// `PRICE_USDC`: price per job, in USDC base units (6 decimals).
    pub price_units: u64,
    /// `PROVIDER_MAX_JOBS`: jobs run at once before answering `busy`.
    pub max_jobs: usize,
    /// `PROMPT_RETENTION_HOURS`: how long other nodes' prompts are kept (24 h; 1 to 8,760).
    pub prompt_retention: std::time::Duration,
    /// `EDGENT_TEST_TAMPER_OUTPUT`: TEST ONLY. The provider proves its real output but
    /// sends an altered one, to test that requesters refuse to pay. Only builds with the
    /// `harness` feature read it; read it through [`ProviderSettings::tamper_output`].
    #[cfg(feature = "harness")]
    pub test_tamper_output: bool,
    /// `EDGENT_TEST_RECEIPT_LIE`: TEST ONLY. The provider's receipt lies about one thing:
    /// `model` (another model's name), `digest` (another digest), `options` (other
    /// sampling), `key` (signed with another key), `none` (no receipt). Only builds with
    /// the `harness` feature read it; read it through [`ProviderSettings::receipt_lie`].
    #[cfg(feature = "harness")]
    pub test_receipt_lie: Option<String>,
    /// `EDGENT_TEST_CLAIM_DIGEST`: TEST ONLY. The provider advertises (and signs) this
    /// digest for every model it serves, whatever it runs: the substitution a spot check
    /// must catch. Only builds with the `harness` feature read it.
    #[cfg(feature = "harness")]
    pub test_claim_digest: Option<String>,
}

impl ProviderSettings {
    /// Read and check the provider's settings.
    pub fn from_lookup(get: Lookup) -> Result<Self, ConfigError> {
        #[cfg(feature = "harness")]
        let test_tamper_output = match get("EDGENT_TEST_TAMPER_OUTPUT") {
            Some(v) => parse_bool("EDGENT_TEST_TAMPER_OUTPUT", &v)?,
            None => false,
        };
        #[cfg(feature = "harness")]
        let test_receipt_lie = match get("EDGENT_TEST_RECEIPT_LIE").filter(|v| !v.is_empty()) {
            Some(v) if ["model", "digest", "options", "key", "none"].contains(&v.as_str()) => {
                Some(v)
            }
            Some(v) => {
                return Err(invalid(
                    "EDGENT_TEST_RECEIPT_LIE",
                    &v,
                    "one of model, digest, options, key, none",
                ))
            }
            None => None,
        };
        #[cfg(feature = "harness")]
        let test_claim_digest = match get("EDGENT_TEST_CLAIM_DIGEST").filter(|v| !v.is_empty()) {
            Some(v) => Some(
                crate::protocol::parse_digest(&v)
                    .map_err(|p| invalid("EDGENT_TEST_CLAIM_DIGEST", &v, p))?,
            ),
            None => None,
        };
        let models = parse_list(&get("PROVIDER_MODELS").unwrap_or_default());
        let price_units = match get("PRICE_USDC") {
            Some(v) => parse_usdc(&v).map_err(|p| invalid("PRICE_USDC", &v, p))?,
            None => 10_000,
        };
        let max_jobs: usize = match get("PROVIDER_MAX_JOBS") {
            Some(v) => parse_num("PROVIDER_MAX_JOBS", &v)?,
            None => 2,
        };
        if max_jobs == 0 {
            return Err(invalid("PROVIDER_MAX_JOBS", "0", "must be at least 1"));
        }
        let hours = super::value::ranged(
            get("PROMPT_RETENTION_HOURS"),
            "PROMPT_RETENTION_HOURS",
            24,
            (1, 8_760),
            "h",
        )?;
        Ok(ProviderSettings {
            models,
            price_units,
            max_jobs,
            prompt_retention: std::time::Duration::from_secs(hours * 3_600),
            #[cfg(feature = "harness")]
            test_tamper_output,
            #[cfg(feature = "harness")]
            test_receipt_lie,
            #[cfg(feature = "harness")]
            test_claim_digest,
        })
    }

    /// Whether this provider sends altered outputs (`EDGENT_TEST_TAMPER_OUTPUT`, TEST
    /// ONLY).
    #[cfg(feature = "harness")]
    pub fn tamper_output(&self) -> bool {
        self.test_tamper_output
    }

    /// What this provider's receipts lie about (`EDGENT_TEST_RECEIPT_LIE`, TEST ONLY).
    #[cfg(feature = "harness")]
    pub fn receipt_lie(&self) -> Option<&str> {
        self.test_receipt_lie.as_deref()
    }

    /// The digest this provider claims for every model (`EDGENT_TEST_CLAIM_DIGEST`, TEST
    /// ONLY).
    #[cfg(feature = "harness")]
    pub fn claim_digest(&self) -> Option<&str> {
        self.test_claim_digest.as_deref()
    }

    /// The digest this provider claims: its models' own in a build without the `harness`
    /// feature.
    #[cfg(not(feature = "harness"))]
    pub fn claim_digest(&self) -> Option<&str> {
        None
    }

    /// What this provider's receipts lie about: nothing in a build without the `harness`
    /// feature.
    #[cfg(not(feature = "harness"))]
    pub fn receipt_lie(&self) -> Option<&str> {
        None
    }

    /// Whether this provider sends altered outputs: never in a build without the
    /// `harness` feature.
    #[cfg(not(feature = "harness"))]
    pub fn tamper_output(&self) -> bool {
        false
    }
}
