//! Generic walk over a pg_query parse tree: visits every message, field and string in it and
//! reports them to a [`Visitor`], which decides what it is looking for and when to stop.
//!
//! The walk goes through the `serde::Serialize` implementation pg_query's protobuf types carry,
//! so no node kind or field is skipped and nothing here knows the grammar. This module owns only
//! that machinery (a `serde` serializer that produces nothing); the rules that read the events
//! live with their users (read/write classification in `access`).
//!
//! Events, in tree order:
//! - [`Visitor::node`]: a message is entered, or a `Node` variant (named after the message it
//!   holds) is met;
//! - [`Visitor::field`] / [`Visitor::field_end`]: a field of the innermost message starts and
//!   is done (the value, with everything nested in it, is walked between the two);
//! - [`Visitor::string`]: a string value.
//!
//! Field and string events carry the [`Path`] to where they happen, e.g.
//! `[.., ("FuncCall", "funcname"), ("Node", "node"), ("String", "sval")]` for a function name
//! part. Numbers, booleans and bytes are not reported.

use std::fmt;
use std::ops::ControlFlow;

use serde::ser::{self, Serialize};

/// A message being visited and the field of it being visited (`""` before the first field).
pub(crate) type Frame = (&'static str, &'static str);

/// The messages being visited, outermost first, each with the field being visited.
pub(crate) type Path = [Frame];

/// What a walk reports to. Every method continues by default; a [`ControlFlow::Break`] from any
/// of them ends the walk at once.
pub(crate) trait Visitor {
    /// A message named `name` is entered, or a `Node` variant named `name` is met.
    fn node(&mut self, _name: &'static str) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    /// A field starts; `path` ends with its message and name.
    fn field(&mut self, _path: &Path) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    /// The field that `path` ends with has been walked.
    fn field_end(&mut self, _path: &Path) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    /// A string value at `path`.
    fn string(&mut self, _path: &Path, _value: &str) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }
}

/// Walks `tree` (any pg_query message or node) and reports it to `visitor`.
///
/// Returns [`ControlFlow::Break`] when the visitor stopped the walk, or when the tree's
/// `Serialize` implementation failed on its own.
pub(crate) fn walk<T, V>(tree: &T, visitor: &mut V) -> ControlFlow<()>
where
    T: ?Sized + Serialize,
    V: ?Sized + Visitor,
{
    let mut walker = Walker {
        visitor,
        frames: Vec::new(),
    };
    match tree.serialize(&mut walker) {
        Ok(()) => ControlFlow::Continue(()),
        Err(Stop) => ControlFlow::Break(()),
    }
}

/// The walk ended early: the visitor asked for it, or serialization failed.
#[derive(Debug)]
struct Stop;

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("parse tree walk stopped")
    }
}

impl std::error::Error for Stop {}

impl ser::Error for Stop {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Stop
    }
}

fn check(flow: ControlFlow<()>) -> Result<(), Stop> {
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(Stop),
    }
}

/// A `serde` serializer that produces nothing and turns what it is given into visitor events.
struct Walker<'v, V: ?Sized> {
    visitor: &'v mut V,
    /// For each message being visited, innermost last: its type name and the field being
    /// visited.
    frames: Vec<Frame>,
}

impl<V: ?Sized + Visitor> Walker<'_, V> {
    fn open(&mut self, name: &'static str) -> Result<(), Stop> {
        check(self.visitor.node(name))?;
        self.frames.push((name, ""));
        Ok(())
    }

    fn field<T: ?Sized + Serialize>(&mut self, key: &'static str, value: &T) -> Result<(), Stop> {
        if let Some(frame) = self.frames.last_mut() {
            frame.1 = key;
        }
        check(self.visitor.field(&self.frames))?;
        value.serialize(&mut *self)?;
        check(self.visitor.field_end(&self.frames))
    }

    fn close(&mut self) -> Result<(), Stop> {
        self.frames.pop();
        Ok(())
    }
}

macro_rules! ignore_scalars {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(
            fn $method(self, _value: $ty) -> Result<(), Stop> {
                Ok(())
            }
        )*
    };
}

impl<V: ?Sized + Visitor> ser::Serializer for &mut Walker<'_, V> {
    type Ok = ();
    type Error = Stop;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    ignore_scalars!(
        serialize_bool: bool,
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_f32: f32,
        serialize_f64: f64,
        serialize_char: char,
        serialize_bytes: &[u8],
    );

    fn serialize_str(self, value: &str) -> Result<(), Stop> {
        check(self.visitor.string(&self.frames, value))
    }

    fn serialize_none(self) -> Result<(), Stop> {
        Ok(())
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Stop> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Stop> {
        Ok(())
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<(), Stop> {
        check(self.visitor.node(name))
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Stop> {
        self.serialize_unit_struct(variant)
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Stop> {
        // The variants of pg_query's `node::Node` are named after the message they hold.
        check(self.visitor.node(variant))?;
        value.serialize(self)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self, Stop> {
        Ok(self)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self, Stop> {
        Ok(self)
    }

    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, Stop> {
        Ok(self)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, Stop> {
        Ok(self)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self, Stop> {
        Ok(self)
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Self, Stop> {
        self.open(name)?;
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Self, Stop> {
        self.open(variant)?;
        Ok(self)
    }
}

/// Messages: named fields between [`Walker::open`] and [`Walker::close`].
macro_rules! field_walks {
    ($($trait:ident),* $(,)?) => {
        $(
            impl<V: ?Sized + Visitor> ser::$trait for &mut Walker<'_, V> {
                type Ok = ();
                type Error = Stop;

                fn serialize_field<T: ?Sized + Serialize>(
                    &mut self,
                    key: &'static str,
                    value: &T,
                ) -> Result<(), Stop> {
                    self.field(key, value)
                }

                fn end(self) -> Result<(), Stop> {
                    self.close()
                }
            }
        )*
    };
}

field_walks!(SerializeStruct, SerializeStructVariant);

/// Lists and tuples: each element walked in order.
macro_rules! element_walks {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(
            impl<V: ?Sized + Visitor> ser::$trait for &mut Walker<'_, V> {
                type Ok = ();
                type Error = Stop;

                fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Stop> {
                    value.serialize(&mut **self)
                }

                fn end(self) -> Result<(), Stop> {
                    Ok(())
                }
            }
        )*
    };
}

element_walks!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl<V: ?Sized + Visitor> ser::SerializeMap for &mut Walker<'_, V> {
    type Ok = ();
    type Error = Stop;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Stop> {
        key.serialize(&mut **self)
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Stop> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), Stop> {
        Ok(())
    }
}
