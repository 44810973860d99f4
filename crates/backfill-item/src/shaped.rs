//! Items as the worker makes them: one value per attribute name of the
//! job, in an order fixed for the job, instead of a map per item.
//!
//! The SDK's item is a `HashMap<String, AttributeValue>`: every attribute of
//! every row cost a `String` for its name and a SipHash insert, and the
//! digest then had to put the values back in name order. A [`Shape`] holds
//! the names once per job, sorted as the digest wants them; a
//! [`ShapedItem`] holds only the values. Items become SDK maps only where
//! the SDK needs one (conditional writes, read-back, offloading).

use aws_sdk_dynamodb::types::AttributeValue;

use crate::Item;

/// The attribute names the items of a job are made of, sorted and unique,
/// each marked when it is a copied column (whose absence the digest hashes
/// as a null marker) rather than only a key attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    names: Vec<String>,
    column: Vec<bool>,
}

/// The values of one item, in its [`Shape`]'s order; `None` where the item
/// has no such attribute (a NULL omitted by the NULL policy).
#[derive(Debug, Clone, PartialEq)]
pub struct ShapedItem {
    values: Vec<Option<AttributeValue>>,
}

impl Shape {
    /// The shape of items made of `columns` (copied columns' attribute
    /// names) and `others` (key attributes). A name in both is a column.
    pub fn new<'a>(columns: &[&str], others: impl IntoIterator<Item = &'a str>) -> Self {
        let mut names: Vec<(String, bool)> =
            columns.iter().map(|c| (c.to_string(), true)).collect();
        names.extend(others.into_iter().map(|o| (o.to_string(), false)));
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        names.dedup_by(|a, b| a.0 == b.0);
        let (names, column) = names.into_iter().unzip();
        Shape { names, column }
    }

    /// Where `name` is in the shape.
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.as_str().cmp(name)).ok()
    }

    /// An item with no attributes yet.
    pub fn empty_item(&self) -> ShapedItem {
        ShapedItem {
            values: vec![None; self.names.len()],
        }
    }

    /// The attributes `item` has, in name order.
    pub fn attributes<'a>(
        &'a self,
        item: &'a ShapedItem,
    ) -> impl Iterator<Item = (&'a str, &'a AttributeValue)> + Clone + 'a {
        self.names
            .iter()
            .zip(&item.values)
            .filter_map(|(n, v)| v.as_ref().map(|v| (n.as_str(), v)))
    }

    /// Every name with the item's value, and `None` for an absent copied
    /// column (a key attribute the item lacks is left out): what the
    /// digest hashes.
    pub(crate) fn digest_fields<'a>(
        &'a self,
        item: &'a ShapedItem,
    ) -> impl Iterator<Item = (&'a str, Option<&'a AttributeValue>)> + 'a {
        self.names
            .iter()
            .zip(&self.column)
            .zip(&item.values)
            .filter_map(|((n, column), v)| match v {
                Some(v) => Some((n.as_str(), Some(v))),
                None if *column => Some((n.as_str(), None)),
                None => None,
            })
    }

    /// `item` in this shape, or `None` when it has a name the shape lacks.
    pub fn shape_item(&self, item: Item) -> Option<ShapedItem> {
        let mut shaped = self.empty_item();
        for (name, v) in item {
            shaped.set(self.slot(&name)?, v);
        }
        Some(shaped)
    }

    /// The value of the attribute at `slot`, if the item has it.
    pub fn value_at<'a>(&self, item: &'a ShapedItem, slot: usize) -> Option<&'a AttributeValue> {
        item.values.get(slot).and_then(Option::as_ref)
    }

    /// The SDK's map of `item`, its values cloned.
    pub fn to_item(&self, item: &ShapedItem) -> Item {
        self.attributes(item)
            .map(|(n, v)| (n.to_string(), v.clone()))
            .collect()
    }

    /// The SDK's map of `item`, its values moved.
    pub fn into_item(&self, item: ShapedItem) -> Item {
        self.names
            .iter()
            .zip(item.values)
            .filter_map(|(n, v)| v.map(|v| (n.clone(), v)))
            .collect()
    }
}

impl ShapedItem {
    /// Sets the value in `slot` (a later value for the same slot wins, as a
    /// later insert into a map does).
    pub(crate) fn set(&mut self, slot: usize, v: AttributeValue) {
        if let Some(place) = self.values.get_mut(slot) {
            *place = Some(v);
        }
    }
}
