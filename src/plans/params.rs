//! The parameter values of a sampled Bind as SQL literals, for `EXPLAIN EXECUTE` of a `$n`
//! statement (PostgreSQL 15 has no `EXPLAIN (GENERIC_PLAN)`).
//!
//! The tracker copies one Bind's undecoded parameter section when the sampler asks for it
//! ([`crate::event::BindSample`]); it is decoded here, off the hot path, once the server has
//! said which type each parameter has (`pg_prepared_statements` after the `PREPARE`): binary
//! values need their type to be read. Text-format values pass as they were sent; binary ones
//! are decoded for the common types (bool, int2/4/8, oid, float4/8, text-like) and refused
//! otherwise. Every value becomes a quoted literal of unknown type, which the server coerces
//! to the parameter's type exactly as it would have for a text-format Bind.
//!
//! The values are customers' data: nothing here logs them, and errors name positions and type
//! OIDs, never a value.

use crate::protocol::frontend::BindParams;

/// Why a sampled Bind cannot be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("the sampled Bind is malformed")]
    Malformed,
    #[error("the sampled Bind has {values} values for {parameters} parameters")]
    Count { values: usize, parameters: usize },
    #[error(
        "parameter ${position} was sent in binary format as type OID {oid}, which pgshape does \
         not decode (bool, int2/4/8, oid, float4/8 and text types are)"
    )]
    Binary { position: usize, oid: u32 },
    #[error("parameter ${position} is not valid UTF-8 text")]
    Text { position: usize },
}

/// The declared OIDs of a Parse's parameter-type section (Int16 count, then Int32 OIDs).
pub fn declared_types(section: &[u8]) -> Vec<u32> {
    section
        .get(2..)
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// The `PREPARE` type list for the declared OIDs, given their names (0: `unknown`, so the
/// server infers the type as it did for the client). Empty when nothing was declared.
pub fn type_list(names: &[String]) -> String {
    if names.iter().all(|n| n == "unknown") {
        return String::new();
    }
    format!(" ({})", names.join(", "))
}

/// The Bind's values as a comma-separated list of literals for `EXECUTE name(...)`, read
/// with the server's parameter types `types`.
///
/// # Errors
/// See [`ValueError`].
pub fn literals(params: &[u8], types: &[u32]) -> Result<String, ValueError> {
    let bind = BindParams::decode(params).map_err(|_| ValueError::Malformed)?;
    if bind.values.len() != types.len() {
        return Err(ValueError::Count {
            values: bind.values.len(),
            parameters: types.len(),
        });
    }
    let mut out = String::new();
    for (i, ((value, &binary), &oid)) in bind.values.iter().zip(&bind.binary).zip(types).enumerate()
    {
        if i > 0 {
            out.push_str(", ");
        }
        let position = i + 1;
        let Some(value) = value else {
            out.push_str("NULL");
            continue;
        };
        let text = match binary {
            false => std::str::from_utf8(value)
                .map_err(|_| ValueError::Text { position })?
                .to_owned(),
            true => decode_binary(value, oid).ok_or(ValueError::Binary { position, oid })?,
        };
        if text.contains('\0') {
            return Err(ValueError::Text { position });
        }
        quote_into(&mut out, &text);
    }
    Ok(out)
}

/// A standard string literal (the explain sets `standard_conforming_strings`, so only quotes
/// are doubled).
fn quote_into(out: &mut String, text: &str) {
    out.push('\'');
    out.push_str(&text.replace('\'', "''"));
    out.push('\'');
}

/// The text form of a binary value of type `oid`, for the types drivers send in binary.
fn decode_binary(value: &[u8], oid: u32) -> Option<String> {
    fn float(v: f64) -> String {
        match v {
            v if v.is_nan() => "NaN".to_owned(),
            v if v == f64::INFINITY => "Infinity".to_owned(),
            v if v == f64::NEG_INFINITY => "-Infinity".to_owned(),
            v => v.to_string(),
        }
    }
    Some(match oid {
        16 => match value {
            [0] => "false".to_owned(),
            [1] => "true".to_owned(),
            _ => return None,
        },
        21 => i16::from_be_bytes(value.try_into().ok()?).to_string(),
        23 => i32::from_be_bytes(value.try_into().ok()?).to_string(),
        20 => i64::from_be_bytes(value.try_into().ok()?).to_string(),
        26 => u32::from_be_bytes(value.try_into().ok()?).to_string(),
        700 => float(f32::from_be_bytes(value.try_into().ok()?).into()),
        701 => float(f64::from_be_bytes(value.try_into().ok()?)),
        // text, varchar, bpchar, name, unknown: the binary form is the text itself.
        25 | 1043 | 1042 | 19 | 705 => std::str::from_utf8(value).ok()?.to_owned(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::{ValueError, declared_types, literals, type_list};

    /// A Bind parameter section: format codes, then values (`None` = NULL).
    fn section(formats: &[i16], values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(formats.len() as i16).to_be_bytes());
        for f in formats {
            out.extend_from_slice(&f.to_be_bytes());
        }
        out.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for v in values {
            match v {
                Some(v) => {
                    out.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    out.extend_from_slice(v);
                }
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        out.extend_from_slice(&0i16.to_be_bytes());
        out
    }

    #[test]
    fn text_values_are_quoted_and_nulls_stay_null() {
        let params = section(&[], &[Some(b"it's"), None, Some(b"a\\b")]);
        assert_eq!(
            literals(&params, &[25, 23, 25]).unwrap(),
            r"'it''s', NULL, 'a\b'"
        );
    }

    #[test]
    fn binary_values_of_common_types_are_decoded() {
        let int8 = 42i64.to_be_bytes();
        let int4 = (-7i32).to_be_bytes();
        let float8 = 1.5f64.to_be_bytes();
        let nan = f32::NAN.to_be_bytes();
        let params = section(
            &[1],
            &[
                Some(&int8),
                Some(&int4),
                Some(&[1]),
                Some(&float8),
                Some(&nan),
                Some(b"x'y"),
            ],
        );
        assert_eq!(
            literals(&params, &[20, 23, 16, 701, 700, 1043]).unwrap(),
            "'42', '-7', 'true', '1.5', 'NaN', 'x''y'"
        );
    }

    #[test]
    fn what_cannot_be_decoded_is_refused_without_the_value() {
        let uuid = [7u8; 16];
        let params = section(&[1], &[Some(&uuid)]);
        let error = literals(&params, &[2950]).unwrap_err();
        assert_eq!(
            error,
            ValueError::Binary {
                position: 1,
                oid: 2950
            }
        );
        assert!(error.to_string().contains("$1"));
        let params = section(&[], &[Some(b"1")]);
        assert!(matches!(
            literals(&params, &[23, 23]),
            Err(ValueError::Count {
                values: 1,
                parameters: 2
            })
        ));
        let params = section(&[], &[Some(b"a\0b")]);
        assert_eq!(
            literals(&params, &[25]),
            Err(ValueError::Text { position: 1 })
        );
        assert_eq!(literals(&[0, 1], &[]), Err(ValueError::Malformed));
    }

    #[test]
    fn declared_types_and_the_prepare_list() {
        assert_eq!(declared_types(&[0, 2, 0, 0, 0, 23, 0, 0, 0, 0]), [23, 0]);
        assert_eq!(declared_types(&[]), Vec::<u32>::new());
        assert_eq!(type_list(&["unknown".into(), "unknown".into()]), "");
        assert_eq!(
            type_list(&["integer".into(), "unknown".into()]),
            " (integer, unknown)"
        );
    }
}
