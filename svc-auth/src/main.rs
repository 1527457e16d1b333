//! svc-auth: the auth gRPC service (identity: registration, login, tokens, sessions, signing keys).
//! Run it with `DATABASE_URL=postgres://postgres@127.0.0.1:5432/shop_auth cargo run -p svc-auth`,
//! or the whole platform with `make run`.

use std::process::ExitCode;

#[global_allocator]
static ALLOCATOR: shopmesh_platform::Allocator = shopmesh_platform::Allocator;

#[tokio::main]
async fn main() -> ExitCode {
    // svc-auth's own settings are checked before anything starts, like the
    // common ones: a bad value exits with status 2 naming the variable.
    let env = shopmesh_platform::settings::Env::process();
    if let Err(err) = svc_auth::settings::AuthServiceSettings::from_env(&env) {
        eprintln!("{}: {err}", svc_auth::SPEC.name);
        return ExitCode::from(2);
    }
    shopmesh_platform::app::main(&svc_auth::SPEC, svc_auth::build).await
}
