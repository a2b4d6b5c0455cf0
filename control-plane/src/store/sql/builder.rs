//! A query assembled from pieces with numbered placeholders (`$1`, `$2`, ...), which both
//! SQLite and PostgreSQL read. sqlx's own `QueryBuilder` writes the placeholder of the
//! `Any` driver, `?`, which PostgreSQL refuses.

use std::fmt::Write as _;

use sqlx::any::{Any, AnyArguments, AnyRow};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{Arguments, Encode, FromRow, Type};

pub(crate) struct Sql {
    text: String,
    args: AnyArguments<'static>,
    count: usize,
}

/// Binds separated by a fixed text (`IN (...)` lists).
pub(crate) struct Separated<'b> {
    sql: &'b mut Sql,
    sep: &'static str,
    first: bool,
}

impl Sql {
    pub fn new(text: impl Into<String>) -> Sql {
        Sql {
            text: text.into(),
            args: AnyArguments::default(),
            count: 0,
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Append a placeholder bound to `value`.
    pub fn push_bind<T>(&mut self, value: T) -> &mut Sql
    where
        T: Encode<'static, Any> + Type<Any> + Send + 'static,
    {
        self.count += 1;
        let _ = write!(self.text, "${}", self.count);
        // Adding to in-memory arguments fails only for a type the driver cannot encode,
        // which the bound above rules out; keep the first error for the execution.
        let _ = self.args.add(value);
        self
    }

    pub fn separated(&mut self, sep: &'static str) -> Separated<'_> {
        Separated {
            sql: self,
            sep,
            first: true,
        }
    }

    pub fn build(&mut self) -> Query<'_, Any, AnyArguments<'_>> {
        let args: AnyArguments<'_> = std::mem::take(&mut self.args);
        sqlx::query_with(&self.text, args)
    }

    pub fn build_query_scalar<O>(&mut self) -> QueryScalar<'_, Any, O, AnyArguments<'_>>
    where
        (O,): for<'r> FromRow<'r, AnyRow>,
    {
        let args: AnyArguments<'_> = std::mem::take(&mut self.args);
        sqlx::query_scalar_with(&self.text, args)
    }

    pub fn build_query_as<O>(&mut self) -> QueryAs<'_, Any, O, AnyArguments<'_>>
    where
        O: for<'r> FromRow<'r, AnyRow>,
    {
        let args: AnyArguments<'_> = std::mem::take(&mut self.args);
        sqlx::query_as_with(&self.text, args)
    }
}

impl Separated<'_> {
    pub fn push_bind<T>(&mut self, value: T) -> &mut Self
    where
        T: Encode<'static, Any> + Type<Any> + Send + 'static,
    {
        if !self.first {
            self.sql.push(self.sep);
        }
        self.first = false;
        self.sql.push_bind(value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        let mut q = Sql::new("SELECT * FROM t WHERE a = ");
        q.push_bind(1i64).push(" AND b IN (");
        let mut s = q.separated(", ");
        s.push_bind(2i64).push_bind(3i64);
        q.push(")");
        assert_eq!(q.text, "SELECT * FROM t WHERE a = $1 AND b IN ($2, $3)");
    }
}
