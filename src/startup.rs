//! Builds the HTTP application on a bound socket. `serve` and the tests both
//! use [`Application`], so the tests run exactly what production runs.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};

use crate::config::Settings;
use crate::db::DbPool;
use crate::http;
use crate::webhook::intake::IntakeConfig;

pub struct Application {
    address: SocketAddr,
    server: Server,
}

impl Application {
    /// Binds `settings.listen` (port 0 picks a free port) and prepares the server.
    pub fn build(settings: &Settings, pool: DbPool) -> std::io::Result<Self> {
        let listener = TcpListener::bind(settings.listen)?;
        let address = listener.local_addr()?;
        let pool = web::Data::new(pool);
        let intake = web::Data::new(IntakeConfig::new(settings.webhook_secrets.clone()));
        let server = HttpServer::new(move || {
            App::new().app_data(pool.clone()).app_data(intake.clone()).configure(http::routes)
        })
        .workers(settings.http_workers)
        .shutdown_timeout(settings.shutdown_timeout.as_secs())
        // Signals are handled by the caller, which also stops the other parts.
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Self { address, server })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Stops the server: `handle().stop(true)` finishes in-flight requests first.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
