//! Integration tests of the customers function against real PostgreSQL, one database each.

mod auth;
mod cache;
mod configuration;
mod credit;
mod credit_concurrency;
mod customers;
mod erasure;
mod events_inbound;
mod events_outbound;
mod grpc;
mod hardening;
mod helpers;
mod lambda_event;
mod logs;
mod openapi;
mod operations;
mod search;
mod segments;
mod tenancy;
mod tls;
mod validation;
