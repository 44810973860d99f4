//! Cells into Arrow record batches, and record batches back into cells.
//!
//! A row is checked against every column before any of it is appended, so
//! a refused row leaves the batch as it was. A batch refuses a row that
//! would take its text and bytes past Arrow's 32-bit offsets (2 GiB)
//! rather than let a builder panic.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Time64MicrosecondType, TimestampMicrosecondType,
};
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, FieldRef, SchemaRef};

use crate::types::{data_type, interval_fields, list_item, ArchiveSchema, ColumnType};
use crate::{ArchiveError, Cell};

/// The most text and bytes one batch holds (Arrow's i32 offsets).
const MAX_BATCH_BYTES: usize = i32::MAX as usize;

/// Rows of cells being gathered into one [`RecordBatch`].
pub struct BatchBuilder {
    arrow: SchemaRef,
    types: Vec<ColumnType>,
    columns: Vec<ColumnBuilder>,
    rows: usize,
    bytes: usize,
    var_bytes: usize,
}

enum ColumnBuilder {
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    Decimal(Decimal128Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Interval(Box<IntervalBuilder>),
    List {
        item: FieldRef,
        offsets: Vec<i32>,
        valid: Vec<bool>,
        values: Box<ColumnBuilder>,
    },
}

/// An interval's three children and whether each row is non-NULL.
#[derive(Default)]
struct IntervalBuilder {
    months: Int32Builder,
    days: Int32Builder,
    micros: Int64Builder,
    valid: Vec<bool>,
}

impl ColumnBuilder {
    fn new(ty: &ColumnType) -> Self {
        match ty {
            ColumnType::Int16 => Self::I16(Int16Builder::new()),
            ColumnType::Int32 => Self::I32(Int32Builder::new()),
            ColumnType::Int64 => Self::I64(Int64Builder::new()),
            ColumnType::Decimal { .. } => {
                Self::Decimal(Decimal128Builder::new().with_data_type(data_type(ty)))
            }
            ColumnType::Float32 => Self::F32(Float32Builder::new()),
            ColumnType::Float64 => Self::F64(Float64Builder::new()),
            ColumnType::Bool => Self::Bool(BooleanBuilder::new()),
            ColumnType::Text | ColumnType::Json | ColumnType::ArrayJson => {
                Self::Str(StringBuilder::new())
            }
            ColumnType::Binary => Self::Bin(BinaryBuilder::new()),
            ColumnType::Date => Self::Date(Date32Builder::new()),
            ColumnType::Timestamp => Self::Timestamp(TimestampMicrosecondBuilder::new()),
            ColumnType::TimestampTz => {
                Self::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            ColumnType::Time | ColumnType::TimeTz => Self::Time(Time64MicrosecondBuilder::new()),
            ColumnType::Interval => Self::Interval(Box::default()),
            ColumnType::List(elem) => Self::List {
                item: Arc::new(list_item(elem)),
                offsets: vec![0],
                valid: Vec::new(),
                values: Box::new(Self::new(elem)),
            },
        }
    }

    /// Appends a cell that [`fits`] the column (anything else is appended
    /// as NULL, which [`BatchBuilder::push`] never lets happen).
    fn append(&mut self, cell: &Cell) {
        match (self, cell) {
            (Self::I16(b), Cell::I16(v)) => b.append_value(*v),
            (Self::I32(b), Cell::I32(v)) => b.append_value(*v),
            (Self::I64(b), Cell::I64(v)) => b.append_value(*v),
            (Self::Decimal(b), Cell::Decimal(v)) => b.append_value(*v),
            (Self::F32(b), Cell::F32(v)) => b.append_value(*v),
            (Self::F64(b), Cell::F64(v)) => b.append_value(*v),
            (Self::Bool(b), Cell::Bool(v)) => b.append_value(*v),
            (Self::Str(b), Cell::Str(v)) => b.append_value(v),
            (Self::Bin(b), Cell::Bin(v)) => b.append_value(v),
            (Self::Date(b), Cell::Date(v)) => b.append_value(*v),
            (Self::Timestamp(b), Cell::Micros(v)) => b.append_value(*v),
            (Self::Time(b), Cell::Micros(v)) => b.append_value(*v),
            (
                Self::Interval(b),
                Cell::Interval {
                    months: m,
                    days: d,
                    micros: u,
                },
            ) => {
                b.months.append_value(*m);
                b.days.append_value(*d);
                b.micros.append_value(*u);
                b.valid.push(true);
            }
            (
                Self::List {
                    offsets,
                    valid,
                    values,
                    ..
                },
                Cell::List(items),
            ) => {
                for i in items {
                    values.append(i);
                }
                let last = offsets.last().copied().unwrap_or(0);
                // Bounded by BatchBuilder::push's element count check.
                offsets.push(last.saturating_add(items.len() as i32));
                valid.push(true);
            }
            (b, _) => b.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::I16(b) => b.append_null(),
            Self::I32(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::Decimal(b) => b.append_null(),
            Self::F32(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::Bool(b) => b.append_null(),
            Self::Str(b) => b.append_null(),
            Self::Bin(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            // The struct's children hold zeros under a NULL interval, so
            // they need no nulls of their own.
            Self::Interval(b) => {
                b.months.append_value(0);
                b.days.append_value(0);
                b.micros.append_value(0);
                b.valid.push(false);
            }
            Self::List { offsets, valid, .. } => {
                offsets.push(offsets.last().copied().unwrap_or(0));
                valid.push(false);
            }
        }
    }

    /// The column's array so far; the builder starts over empty.
    fn finish(&mut self) -> Result<ArrayRef, ArchiveError> {
        Ok(match self {
            Self::I16(b) => Arc::new(b.finish()),
            Self::I32(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::Decimal(b) => Arc::new(b.finish()),
            Self::F32(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Str(b) => Arc::new(b.finish()),
            Self::Bin(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Interval(b) => {
                let children: Vec<ArrayRef> = vec![
                    Arc::new(b.months.finish()),
                    Arc::new(b.days.finish()),
                    Arc::new(b.micros.finish()),
                ];
                let nulls = NullBuffer::from(std::mem::take(&mut b.valid));
                Arc::new(StructArray::try_new(
                    interval_fields(),
                    children,
                    Some(nulls),
                )?)
            }
            Self::List {
                item,
                offsets,
                valid,
                values,
            } => {
                let offsets =
                    OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(offsets, vec![0])));
                let nulls = NullBuffer::from(std::mem::take(valid));
                let values = values.finish()?;
                Arc::new(ListArray::try_new(
                    item.clone(),
                    offsets,
                    values,
                    Some(nulls),
                )?)
            }
        })
    }
}

/// Whether `cell` can be stored in a column of type `ty`.
fn fits(ty: &ColumnType, cell: &Cell) -> bool {
    matches!(
        (ty, cell),
        (_, Cell::Null)
            | (ColumnType::Int16, Cell::I16(_))
            | (ColumnType::Int32, Cell::I32(_))
            | (ColumnType::Int64, Cell::I64(_))
            | (ColumnType::Float32, Cell::F32(_))
            | (ColumnType::Float64, Cell::F64(_))
            | (ColumnType::Bool, Cell::Bool(_))
            | (
                ColumnType::Text | ColumnType::Json | ColumnType::ArrayJson,
                Cell::Str(_)
            )
            | (ColumnType::Binary, Cell::Bin(_))
            | (ColumnType::Date, Cell::Date(_))
            | (
                ColumnType::Timestamp
                    | ColumnType::TimestampTz
                    | ColumnType::Time
                    | ColumnType::TimeTz,
                Cell::Micros(_)
            )
            | (ColumnType::Interval, Cell::Interval { .. })
    ) || match (ty, cell) {
        // A decimal must have no more digits than its precision says.
        (ColumnType::Decimal { precision, .. }, Cell::Decimal(v)) => 10i128
            .checked_pow(u32::from(*precision))
            .is_some_and(|bound| v.unsigned_abs() < bound.unsigned_abs()),
        (ColumnType::List(elem), Cell::List(items)) => items.iter().all(|i| fits(elem, i)),
        _ => false,
    }
}

/// The bytes of text and binary in a cell (what fills 32-bit offsets),
/// and the list elements it adds.
fn var_size(cell: &Cell) -> (usize, usize) {
    match cell {
        Cell::Str(s) => (s.len(), 0),
        Cell::Bin(b) => (b.len(), 0),
        Cell::List(items) => items.iter().fold((0, items.len()), |(b, n), i| {
            let (ib, in_) = var_size(i);
            (b + ib, n + in_)
        }),
        _ => (0, 0),
    }
}

impl BatchBuilder {
    /// An empty batch of `schema`'s columns.
    pub fn new(schema: &ArchiveSchema) -> Self {
        BatchBuilder {
            arrow: schema.arrow.clone(),
            types: schema.columns.clone(),
            columns: schema.columns.iter().map(ColumnBuilder::new).collect(),
            rows: 0,
            bytes: 0,
            var_bytes: 0,
        }
    }

    /// Appends one row, or refuses it whole: a cell of the wrong type, a
    /// NULL in a NOT NULL column, or a batch that is full.
    pub fn push(&mut self, cells: &[Cell]) -> Result<(), ArchiveError> {
        if cells.len() != self.types.len() {
            return Err(ArchiveError::Arity {
                got: cells.len(),
                want: self.types.len(),
            });
        }
        let mut var = 0usize;
        for (i, (ty, cell)) in self.types.iter().zip(cells).enumerate() {
            let field = self.arrow.field(i);
            if !fits(ty, cell) {
                return Err(ArchiveError::CellType {
                    column: field.name().clone(),
                    column_type: format!("{ty:?}"),
                    cell: cell.variant().to_string(),
                });
            }
            if matches!(cell, Cell::Null) && !field.is_nullable() {
                return Err(ArchiveError::value(
                    field.name(),
                    "NULL",
                    "NULL in a NOT NULL column",
                ));
            }
            let (b, n) = var_size(cell);
            // List elements count against the same bound: they fill i32
            // offsets too, and are never more than bytes plus elements.
            var = var.saturating_add(b).saturating_add(n);
        }
        if self.var_bytes.saturating_add(var) > MAX_BATCH_BYTES {
            return Err(ArchiveError::BatchFull(format!(
                "{} rows hold {} bytes of text, bytes and list elements; this row adds {}",
                self.rows, self.var_bytes, var
            )));
        }
        for (b, cell) in self.columns.iter_mut().zip(cells) {
            match cell {
                Cell::Null => b.append_null(),
                c => b.append(c),
            }
        }
        self.rows += 1;
        self.var_bytes += var;
        self.bytes += cells.iter().map(approx_cell_bytes).sum::<usize>();
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// About how many bytes the rows gathered so far take in Arrow.
    pub fn approx_bytes(&self) -> usize {
        self.bytes
    }

    /// The batch of the rows so far; the builder starts over empty.
    pub fn finish(&mut self) -> Result<RecordBatch, ArchiveError> {
        let arrays = self
            .columns
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        self.rows = 0;
        self.bytes = 0;
        self.var_bytes = 0;
        Ok(RecordBatch::try_new(self.arrow.clone(), arrays)?)
    }
}

fn approx_cell_bytes(cell: &Cell) -> usize {
    match cell {
        Cell::Null | Cell::Bool(_) => 1,
        Cell::I16(_) => 2,
        Cell::I32(_) | Cell::F32(_) | Cell::Date(_) => 4,
        Cell::I64(_) | Cell::F64(_) | Cell::Micros(_) => 8,
        Cell::Decimal(_) | Cell::Interval { .. } => 16,
        Cell::Str(s) => s.len() + 4,
        Cell::Bin(b) => b.len() + 4,
        Cell::List(items) => 4 + items.iter().map(approx_cell_bytes).sum::<usize>(),
    }
}

/// The rows of `batch` as cells, one `Vec` per row: exactly what was
/// pushed (floats to the bit). Fails on a column that is not of the type
/// `schema` says.
pub fn batch_cells(
    schema: &ArchiveSchema,
    batch: &RecordBatch,
) -> Result<Vec<Vec<Cell>>, ArchiveError> {
    if batch.num_columns() != schema.columns.len() {
        return Err(ArchiveError::Arity {
            got: batch.num_columns(),
            want: schema.columns.len(),
        });
    }
    let mut rows: Vec<Vec<Cell>> = (0..batch.num_rows())
        .map(|_| Vec::with_capacity(schema.columns.len()))
        .collect();
    for (i, ty) in schema.columns.iter().enumerate() {
        let array = batch.column(i);
        for (r, row) in rows.iter_mut().enumerate() {
            let cell = cell_at(ty, array.as_ref(), r).ok_or_else(|| ArchiveError::Schema {
                column: schema.name(i).to_string(),
                pg_type: schema.pg_type(i).to_string(),
                reason: format!("the batch holds {}, not {ty:?}", array.data_type()),
            })?;
            row.push(cell);
        }
    }
    Ok(rows)
}

/// The cell at row `r` of `a`; `None` when `a` is not of type `ty`.
fn cell_at(ty: &ColumnType, a: &dyn Array, r: usize) -> Option<Cell> {
    if r >= a.len() {
        return None;
    }
    if a.is_null(r) {
        return Some(Cell::Null);
    }
    Some(match ty {
        ColumnType::Int16 => Cell::I16(a.as_primitive_opt::<Int16Type>()?.value(r)),
        ColumnType::Int32 => Cell::I32(a.as_primitive_opt::<Int32Type>()?.value(r)),
        ColumnType::Int64 => Cell::I64(a.as_primitive_opt::<Int64Type>()?.value(r)),
        ColumnType::Decimal { .. } => {
            Cell::Decimal(a.as_primitive_opt::<Decimal128Type>()?.value(r))
        }
        ColumnType::Float32 => Cell::F32(a.as_primitive_opt::<Float32Type>()?.value(r)),
        ColumnType::Float64 => Cell::F64(a.as_primitive_opt::<Float64Type>()?.value(r)),
        ColumnType::Bool => Cell::Bool(a.as_boolean_opt()?.value(r)),
        ColumnType::Text | ColumnType::Json | ColumnType::ArrayJson => {
            Cell::Str(a.as_string_opt::<i32>()?.value(r).to_string())
        }
        ColumnType::Binary => Cell::Bin(a.as_binary_opt::<i32>()?.value(r).to_vec()),
        ColumnType::Date => Cell::Date(a.as_primitive_opt::<Date32Type>()?.value(r)),
        ColumnType::Timestamp | ColumnType::TimestampTz => {
            Cell::Micros(a.as_primitive_opt::<TimestampMicrosecondType>()?.value(r))
        }
        ColumnType::Time | ColumnType::TimeTz => {
            Cell::Micros(a.as_primitive_opt::<Time64MicrosecondType>()?.value(r))
        }
        ColumnType::Interval => {
            let s = a.as_struct_opt()?;
            if s.num_columns() != 3 {
                return None;
            }
            Cell::Interval {
                months: s.column(0).as_primitive_opt::<Int32Type>()?.value(r),
                days: s.column(1).as_primitive_opt::<Int32Type>()?.value(r),
                micros: s.column(2).as_primitive_opt::<Int64Type>()?.value(r),
            }
        }
        ColumnType::List(elem) => {
            if !matches!(a.data_type(), DataType::List(_)) {
                return None;
            }
            let items = a.as_list_opt::<i32>()?.value(r);
            let cells = (0..items.len())
                .map(|j| cell_at(elem, items.as_ref(), j))
                .collect::<Option<Vec<_>>>()?;
            Cell::List(cells)
        }
    })
}
