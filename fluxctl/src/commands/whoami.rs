//! `fluxctl whoami`: the identity (claims) of the current token.

use flux_core::auth::Claims;

use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{Render, SortedKeys, emit};

impl Render for Claims {
    fn render(&self) -> String {
        format!(
            "{} (tenant {}, role {})\n",
            self.sub, self.tenant, self.role
        )
    }
}

pub async fn run(ctx: &Ctx) -> CliResult {
    let claims: Claims = ctx.client()?.get("/v1/whoami").await?;
    emit(ctx.out, &SortedKeys(&claims))?;
    Ok(())
}
