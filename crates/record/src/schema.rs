//! The schema version every top-level record carries.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The record schema this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The `schema` field of a top-level record: always [`SCHEMA_VERSION`] when
/// written; reading any other version is an error that names both, instead of
/// a misread.
///
/// ```
/// use bigbatch_record::Schema;
/// let ok: Schema = serde_json::from_str("1").unwrap();
/// assert_eq!(ok, Schema::default());
/// let err = serde_json::from_str::<Schema>("2").unwrap_err().to_string();
/// assert!(err.contains("schema version 2"), "{err}");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Schema;

impl Serialize for Schema {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(SCHEMA_VERSION)
    }
}

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let found = u32::deserialize(d)?;
        if found == SCHEMA_VERSION {
            Ok(Schema)
        } else {
            Err(serde::de::Error::custom(format!(
                "record of schema version {found}; this bigbatch reads version {SCHEMA_VERSION} \
                 (rerun the experiment, or read it with the bigbatch that wrote it)"
            )))
        }
    }
}
