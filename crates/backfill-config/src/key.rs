//! The key attributes of a table: columns or a template, and their rules.
//!
//! Templates (`USER#{user_id}`) have their own small grammar; its parser
//! and the checks on a key are kept together, apart from the rest of the
//! table mapping.

use serde::{Deserialize, Serialize};

use crate::error::{invalid, ConfigError};

/// A DynamoDB key attribute built from one or more source columns, or from
/// a template such as `USER#{user_id}` (single-table designs).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAttribute {
    /// Source columns; several are joined with `#` into a string.
    #[serde(default)]
    pub columns: Vec<String>,
    /// A template: `{column}` is replaced by the column's value, `{{` and `}}` are braces.
    #[serde(default)]
    pub template: Option<String>,
    /// Attribute name in DynamoDB; defaults to the column's name when there is one column.
    #[serde(default)]
    pub attribute: Option<String>,
}

/// A parsed key template: literal text and column placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Column(String),
}

/// Parses `USER#{user_id}` into parts; `{{` and `}}` are literal braces.
pub fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("`{t}`: unclosed `{{`")),
                    }
                }
                if name.is_empty() {
                    return Err(format!("`{t}`: empty `{{}}`"));
                }
                if !lit.is_empty() {
                    parts.push(TemplatePart::Literal(std::mem::take(&mut lit)));
                }
                parts.push(TemplatePart::Column(name));
            }
            '}' => return Err(format!("`{t}`: unmatched `}}` (write `}}}}` for a brace)")),
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Literal(lit));
    }
    Ok(parts)
}

fn template_columns(t: &str) -> Result<Vec<String>, String> {
    Ok(parse_template(t)?
        .into_iter()
        .filter_map(|p| match p {
            TemplatePart::Column(c) => Some(c),
            TemplatePart::Literal(_) => None,
        })
        .collect())
}

impl KeyAttribute {
    /// The source columns the attribute is built from, templates included.
    pub fn source_columns(&self) -> Vec<String> {
        match &self.template {
            Some(t) => template_columns(t).unwrap_or_default(),
            None => self.columns.clone(),
        }
    }

    /// The attribute name in DynamoDB (validated to exist by [`BackfillConfig::validate`](crate::BackfillConfig::validate)).
    pub fn attribute_name(&self) -> &str {
        match &self.attribute {
            Some(a) => a,
            None => self.columns.first().map(String::as_str).unwrap_or(""),
        }
    }
}

impl KeyAttribute {
    /// A key from columns (joined with `#` when several), named `attribute` or after its one column.
    pub fn columns(columns: &[&str], attribute: Option<&str>) -> Self {
        KeyAttribute {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            template: None,
            attribute: attribute.map(str::to_string),
        }
    }

    /// A key from a template such as `USER#{user_id}`.
    pub fn template(template: &str, attribute: &str) -> Self {
        KeyAttribute {
            columns: Vec::new(),
            template: Some(template.to_string()),
            attribute: Some(attribute.to_string()),
        }
    }
}

pub(crate) fn check_key(key: &str, k: &KeyAttribute) -> Result<(), ConfigError> {
    if let Some(t) = &k.template {
        if !k.columns.is_empty() {
            return Err(invalid(
                key,
                "give either `columns` or `template`, not both",
            ));
        }
        let cols = template_columns(t).map_err(|e| invalid(format!("{key}.template"), e))?;
        if cols.is_empty() {
            return Err(invalid(format!("{key}.template"), "names no {column}"));
        }
        if k.attribute.is_none() {
            return Err(invalid(
                format!("{key}.attribute"),
                "is required with a template",
            ));
        }
        return Ok(());
    }
    if k.columns.is_empty() {
        return Err(invalid(
            format!("{key}.columns"),
            "must name at least one column",
        ));
    }
    if k.columns.iter().any(|c| c.is_empty()) {
        return Err(invalid(format!("{key}.columns"), "a column name is empty"));
    }
    match &k.attribute {
        Some(a) if a.is_empty() => Err(invalid(format!("{key}.attribute"), "must not be empty")),
        None if k.columns.len() > 1 => Err(invalid(
            format!("{key}.attribute"),
            "is required when the key is built from several columns",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BackfillConfig;

    #[test]
    fn template_keys_load() {
        let text = r#"
        [source]
        url = "postgres://h/db"
        [aws]
        region = "us-east-1"
        [queue]
        url = "http://h/1/q"
        dlq_url = "http://h/1/d"
        [control]
        table = "ctl"
        [[tables]]
        source = "t"
        target = "ttt"
        partition_key = { template = "USER#{id}", attribute = "pk" }
        sort_key = { columns = [], template = "O#{a}{{x}}", attribute = "sk" }
        "#;
        let cfg = BackfillConfig::from_toml_str(text).unwrap();
        assert_eq!(cfg.tables[0].partition_key.source_columns(), vec!["id"]);
        assert_eq!(
            parse_template("O#{a}{{x}}").unwrap(),
            vec![
                TemplatePart::Literal("O#".into()),
                TemplatePart::Column("a".into()),
                TemplatePart::Literal("{x}".into())
            ]
        );
        assert!(parse_template("a{b").is_err());
        assert!(parse_template("a}b").is_err());
        assert!(parse_template("{}").is_err());
    }
}
