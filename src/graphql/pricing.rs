//! The cost of a document refused as too complex, for its error message.
//!
//! async-graphql computes a document's complexity while validating it but
//! refuses one over `--max-query-complexity` with only "Query is too
//! complex.". A client fixing its query wants the figure: how far over is
//! it? The served schema cannot tell without an extension, and any
//! extension makes async-graphql resolve every field of every request
//! through it. So the price is asked, only for refused documents, of a
//! second copy of the schema that has no complexity limit and stops after
//! validation ([`PriceOnly`]).

use std::sync::{Arc, OnceLock};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{Request, ServerError, ValidationResult, Variables};
use async_graphql_value::ConstValue;

use super::AppSchema;
use crate::error::AppError;

/// The message async-graphql refuses a too complex document with.
pub const TOO_COMPLEX: &str = "Query is too complex.";

/// Variables are kept for pricing only while their strings are this short
/// in all: complexity reads page sizes, not specs, and a mutation carrying
/// a megabyte of markdown should not pay for a copy it never needs.
const LARGEST_KEPT_STRINGS: usize = 4 * 1024;

/// Prices documents; see the module's documentation.
pub struct Pricing {
    /// The schema without a complexity limit, behind [`PriceOnly`].
    schema: AppSchema,
}

impl Pricing {
    pub fn new(schema: AppSchema) -> Pricing {
        Pricing { schema }
    }

    /// The complexity of `document` with `variables`, as async-graphql
    /// counts it; `None` when the document does not validate.
    pub async fn complexity(
        &self,
        document: &ExecutableDocument,
        variables: Variables,
        operation_name: Option<String>,
    ) -> Option<usize> {
        let priced = Arc::new(Priced::default());
        let mut request = Request::new("")
            .variables(variables)
            .data(Arc::clone(&priced));
        request.operation_name = operation_name;
        request.set_parsed_query(document.clone());
        // Always refused: the extension stops every request after validation.
        let _ = self.schema.execute(request).await;
        priced.0.get().copied()
    }
}

/// A copy of `variables` for [`Pricing::complexity`], unless their strings
/// are long (see [`LARGEST_KEPT_STRINGS`]).
pub fn kept_for_pricing(variables: &Variables) -> Option<Variables> {
    let mut budget = LARGEST_KEPT_STRINGS;
    variables
        .values()
        .all(|value| fits(value, &mut budget))
        .then(|| variables.clone())
}

fn fits(value: &ConstValue, budget: &mut usize) -> bool {
    match value {
        ConstValue::String(text) => match budget.checked_sub(text.len()) {
            Some(left) => {
                *budget = left;
                true
            }
            None => false,
        },
        ConstValue::List(items) => items.iter().all(|item| fits(item, budget)),
        ConstValue::Object(fields) => fields.values().all(|field| fits(field, budget)),
        ConstValue::Binary(bytes) => bytes.len() <= *budget,
        _ => true,
    }
}

/// The refusal of a document over `limit`, with its `cost` when known.
pub fn too_complex(cost: Option<usize>, limit: usize) -> AppError {
    let cost = match cost {
        Some(cost) => format!("its cost is {cost}"),
        None => "its cost".into(),
    };
    AppError::BadUserInput(format!(
        "The query is too complex: {cost} (one per field, {} per document, lists multiplied by the page they ask for), over the server's limit of {limit} (--max-query-complexity); ask for smaller pages or fewer nested lists",
        super::limits::DOCUMENT_COMPLEXITY
    ))
}

/// Where [`PriceOnly`] leaves the complexity of the request it stopped.
#[derive(Default)]
struct Priced(OnceLock<usize>);

/// Stops every request after validation, keeping its complexity.
pub struct PriceOnly;

impl ExtensionFactory for PriceOnly {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(PriceOnly)
    }
}

#[async_trait::async_trait]
impl Extension for PriceOnly {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        if let Some(priced) = ctx.data_opt::<Arc<Priced>>() {
            let _ = priced.0.set(result.complexity);
        }
        Err(vec![ServerError::new("priced, not run", None)])
    }
}
