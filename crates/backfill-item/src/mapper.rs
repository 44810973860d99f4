//! The [`ItemMapper`]: built once per job, checked against the table as it is.
//!
//! Construction is where a wrong mapping is caught (a key or `include`
//! naming a missing column, a column stored under a key's name), before
//! any row is read; mapping rows is in `map.rs`, so this file holds the
//! mapper's layout and those checks.

use aws_sdk_dynamodb::types::ScalarAttributeType;
use backfill_config::{
    parse_template, KeyAttribute, NullPolicy, TableConfig, TemplatePart, TypeOverride,
    Unrepresentable,
};
use backfill_model::{ColumnKind, TableSchema};

use crate::key_plan::{KeyPlan, KeySource, Part, MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES};
use crate::{keys, MapError, Shape};

/// A copied column: where it is in the row and what it becomes.
#[derive(Debug, Clone)]
pub(crate) struct ColumnPlan {
    pub(crate) index: usize,
    pub(crate) column: String,
    pub(crate) attribute: String,
    pub(crate) form: Option<TypeOverride>,
}

/// Maps the rows of one table to items of its target.
#[derive(Debug, Clone)]
pub struct ItemMapper {
    pub(crate) table: String,
    pub(crate) column_names: Vec<String>,
    pub(crate) columns: Vec<ColumnPlan>,
    pub(crate) partition: KeyPlan,
    pub(crate) sort: Option<KeyPlan>,
    pub(crate) nulls: NullPolicy,
    pub(crate) unrepresentable: Unrepresentable,
    pub(crate) version: Option<(usize, String)>,
    /// Per source column: whether exactly one attribute is made from it, so
    /// `map_row_owned` may move its value instead of copying it.
    pub(crate) used_once: Vec<bool>,
    /// The names of the items this mapper makes, for [`ItemMapper::map_row_shaped`].
    pub(crate) shape: std::sync::Arc<Shape>,
    /// Each copied column's place in `shape`, in the order of `columns`.
    pub(crate) column_slots: Vec<usize>,
    /// The partition key's place in `shape`, then the sort key's.
    pub(crate) key_slots: Vec<usize>,
}

impl ItemMapper {
    /// Checks the mapping (key, include, exclude, rename, types, version
    /// column) against the table as it is and builds the mapper.
    pub fn new(cfg: &TableConfig, schema: &TableSchema) -> Result<Self, MapError> {
        let table = schema.table.to_string();
        let table_err = |reason: String| MapError::Table {
            table: table.clone(),
            reason,
        };
        let position = |name: &str, what: &str| {
            schema
                .columns
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| {
                    table_err(format!(
                        "{what} names column {name}, which the table does not have"
                    ))
                })
        };
        let plan = |k: &KeyAttribute, max_bytes: usize| -> Result<KeyPlan, MapError> {
            let what = format!("key attribute {}", k.attribute_name());
            let (source, attribute_type) = match &k.template {
                Some(t) => {
                    let parts = parse_template(t)
                        .map_err(|e| table_err(format!("{what}: {e}")))?
                        .into_iter()
                        .map(|p| match p {
                            TemplatePart::Literal(l) => Ok(Part::Literal(l)),
                            TemplatePart::Column(c) => position(&c, &what).map(Part::Column),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    (KeySource::Template(parts), ScalarAttributeType::S)
                }
                None => {
                    let cols = k
                        .columns
                        .iter()
                        .map(|c| position(c, &what))
                        .collect::<Result<Vec<_>, _>>()?;
                    let ty = match cols.as_slice() {
                        [one] => match schema.columns[*one].kind {
                            ColumnKind::Int2
                            | ColumnKind::Int4
                            | ColumnKind::Int8
                            | ColumnKind::Numeric
                            | ColumnKind::Float4
                            | ColumnKind::Float8
                            | ColumnKind::Money => ScalarAttributeType::N,
                            ColumnKind::Bytea => ScalarAttributeType::B,
                            _ => ScalarAttributeType::S,
                        },
                        _ => ScalarAttributeType::S,
                    };
                    (KeySource::Columns(cols), ty)
                }
            };
            let separators = keys::separator_chars(&source);
            if let KeySource::Template(parts) = &source {
                if parts
                    .windows(2)
                    .any(|w| matches!(w, [Part::Column(_), Part::Column(_)]))
                {
                    return Err(table_err(format!(
                        "{what}: template `{}` puts two columns side by side with no separator, so two rows could make one key",
                        k.template.as_deref().unwrap_or_default()
                    )));
                }
            }
            Ok(KeyPlan {
                attribute: k.attribute_name().to_string(),
                attribute_type,
                source,
                max_bytes,
                separators,
                ambiguous: cfg.ambiguous_keys,
            })
        };
        let partition = plan(&cfg.partition_key, MAX_PARTITION_KEY_BYTES)?;
        let sort = cfg
            .sort_key
            .as_ref()
            .map(|k| plan(k, MAX_SORT_KEY_BYTES))
            .transpose()?;

        for c in cfg.include.iter().flatten() {
            position(c, "`include`")?;
        }
        for c in &cfg.exclude {
            position(c, "`exclude`")?;
        }
        for c in cfg.rename.keys() {
            position(c, "`rename`")?;
        }
        for c in cfg.types.keys() {
            position(c, "`types`")?;
        }
        let version = cfg
            .version_column
            .as_ref()
            .map(|v| {
                let i = position(v, "`version_column`")?;
                Ok::<_, MapError>((i, cfg.rename.get(v).cloned().unwrap_or_else(|| v.clone())))
            })
            .transpose()?;
        let key_attrs: Vec<&str> = std::iter::once(&partition)
            .chain(sort.as_ref())
            .map(|k| k.attribute.as_str())
            .collect();
        let mut columns = Vec::new();
        for (index, c) in schema.columns.iter().enumerate() {
            let included = cfg.include.as_ref().is_none_or(|inc| inc.contains(&c.name))
                || version.as_ref().is_some_and(|(v, _)| *v == index);
            if !included || cfg.exclude.contains(&c.name) {
                continue;
            }
            let attribute = cfg
                .rename
                .get(&c.name)
                .cloned()
                .unwrap_or_else(|| c.name.clone());
            if key_attrs.contains(&attribute.as_str())
                && !is_plain_key_column(&partition, &sort, index, &attribute)
            {
                return Err(table_err(format!(
                    "column {} would be stored as attribute {attribute}, which is a key attribute; rename or exclude it",
                    c.name
                )));
            }
            columns.push(ColumnPlan {
                index,
                column: c.name.clone(),
                attribute,
                form: cfg.types.get(&c.name).copied(),
            });
        }
        let mut uses = vec![0usize; schema.columns.len()];
        for c in &columns {
            if let Some(n) = uses.get_mut(c.index) {
                *n += 1;
            }
        }
        let column_refs: Vec<&str> = columns.iter().map(|c| c.attribute.as_str()).collect();
        let shape = Shape::new(&column_refs, key_attrs.iter().copied());
        let slot = |name: &str| {
            shape
                .slot(name)
                .ok_or_else(|| table_err(format!("attribute {name} is missing from its shape")))
        };
        let column_slots = column_refs
            .iter()
            .map(|n| slot(n))
            .collect::<Result<Vec<_>, _>>()?;
        let key_slots = key_attrs
            .iter()
            .map(|n| slot(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ItemMapper {
            shape: std::sync::Arc::new(shape),
            column_slots,
            key_slots,
            partition,
            sort,
            column_names: schema.columns.iter().map(|c| c.name.clone()).collect(),
            used_once: uses.into_iter().map(|n| n == 1).collect(),
            columns,
            nulls: cfg.nulls,
            unrepresentable: cfg.unrepresentable,
            version,
            table,
        })
    }

    /// The partition key attribute of the target.
    pub fn partition_key(&self) -> &KeyPlan {
        &self.partition
    }

    /// The names of the columns the partition key is built from.
    pub fn partition_key_columns(&self) -> Vec<String> {
        self.partition
            .columns()
            .into_iter()
            .filter_map(|i| self.column_names.get(i).cloned())
            .collect()
    }

    /// The sort key attribute of the target, if any.
    pub fn sort_key(&self) -> Option<&KeyPlan> {
        self.sort.as_ref()
    }

    /// The attribute holding the version, when writes are conditional on it.
    pub fn version_attribute(&self) -> Option<&str> {
        self.version.as_ref().map(|(_, a)| a.as_str())
    }

    /// Names of the attributes copied columns become (keys excluded).
    pub fn column_attributes(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.attribute.as_str())
    }

    /// The shape of the items [`ItemMapper::map_row_shaped`] makes.
    pub fn shape(&self) -> &std::sync::Arc<Shape> {
        &self.shape
    }
}

/// A column stored under a key attribute's name is fine only when it is
/// that key's own single column (its value is the key's value).
fn is_plain_key_column(
    partition: &KeyPlan,
    sort: &Option<KeyPlan>,
    index: usize,
    attribute: &str,
) -> bool {
    std::iter::once(partition).chain(sort.as_ref()).any(|k| {
        k.attribute == attribute
            && matches!(&k.source, KeySource::Columns(c) if c.as_slice() == [index])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::schema;

    #[test]
    fn a_column_named_like_a_template_key_is_refused() {
        let mut cfg = TableConfig::new("public.t", "target", KeyAttribute::template("A#{a}", "b"));
        cfg.sort_key = None;
        let e = ItemMapper::new(
            &cfg,
            &schema(&[("a", ColumnKind::Text), ("b", ColumnKind::Text)]),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("column b would be stored as attribute b"),
            "{e}"
        );
    }
}
