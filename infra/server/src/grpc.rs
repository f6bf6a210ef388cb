//! `customers.v1.CustomerService`: each RPC verifies the bearer token, parses its message and
//! calls the same operation as the HTTP route; errors map in `status`.

use std::future::Future;

use shared::auth::Caller;
use shared::credit::model::PaymentRequest;
use shared::credit::Written;
use shared::error::ApiError;
use shared::http::AppState;
use shared::money::Money;
use tonic::{Request, Response, Status};
use tracing::Instrument;
use uuid::Uuid;

use crate::proto;
use crate::proto::customer_service_server::CustomerService;
use crate::status::status_of;

/// The service over the application state every transport shares.
pub struct Grpc {
    state: AppState,
}

impl Grpc {
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// Runs one call in a span with its method, request id and organization: verifies the
    /// `authorization` metadata, then hands the caller and the message to `work`.
    async fn call<M, R, Fut>(
        &self,
        method: &'static str,
        request: Request<M>,
        work: impl FnOnce(Caller, M) -> Fut,
    ) -> Result<Response<R>, Status>
    where
        Fut: Future<Output = Result<R, ApiError>>,
    {
        let metadata = request.metadata();
        let request_id = shared::http::request_id(metadata.get("x-request-id").map(|value| value.as_bytes()));
        let authorization = metadata.get("authorization").map(|value| value.as_bytes().to_vec());
        let span = tracing::info_span!("grpc", method, request_id, organization_id = tracing::field::Empty);
        let outcome = async {
            let caller = self.state.verifier.verify_authorization(authorization.as_deref()).await?;
            tracing::Span::current().record("organization_id", tracing::field::display(caller.organization_id));
            work(caller, request.into_inner()).await
        }
        .instrument(span.clone())
        .await;
        let _entered = span.enter();
        match outcome {
            Ok(answer) => {
                tracing::info!("answered");
                Ok(Response::new(answer))
            }
            Err(error) => Err(status_of(error)),
        }
    }
}

fn id(field: &str, text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::invalid(field, "must be a UUID"))
}

fn amount(field: &str, text: &str) -> Result<Money, ApiError> {
    Money::parse_positive(text).map_err(|message| ApiError::invalid(field, message))
}

fn written<T, M: From<T>>(result: Written<T>) -> (M, bool) {
    match result {
        Written::Created(value) => (value.into(), false),
        Written::Replayed(value) => (value.into(), true),
    }
}

#[tonic::async_trait]
impl CustomerService for Grpc {
    async fn get_customer(
        &self,
        request: Request<proto::GetCustomerRequest>,
    ) -> Result<Response<proto::Customer>, Status> {
        self.call("GetCustomer", request, |caller, message| async move {
            let customer_id = id("customer_id", &message.customer_id)?;
            Ok(shared::customers::get(&self.state.app, &caller, customer_id).await?.into())
        })
        .await
    }

    async fn batch_get_customers(
        &self,
        request: Request<proto::BatchGetCustomersRequest>,
    ) -> Result<Response<proto::BatchGetCustomersResponse>, Status> {
        self.call("BatchGetCustomers", request, |caller, message| async move {
            let ids = message
                .customer_ids
                .iter()
                .enumerate()
                .map(|(n, text)| id(&format!("customer_ids[{n}]"), text))
                .collect::<Result<Vec<_>, _>>()?;
            let customers = shared::customers::get_many(&self.state.app, &caller, &ids).await?;
            Ok(proto::BatchGetCustomersResponse { customers: customers.into_iter().map(Into::into).collect() })
        })
        .await
    }

    async fn get_loyalty_tier(
        &self,
        request: Request<proto::GetLoyaltyTierRequest>,
    ) -> Result<Response<proto::LoyaltyTier>, Status> {
        self.call("GetLoyaltyTier", request, |caller, message| async move {
            let customer_id = id("customer_id", &message.customer_id)?;
            let purchase = message.amount.as_deref().map(|text| amount("amount", text)).transpose()?;
            Ok(shared::customers::loyalty(&self.state.app, &caller, customer_id, purchase).await?.into())
        })
        .await
    }

    async fn get_credit_account(
        &self,
        request: Request<proto::GetCreditAccountRequest>,
    ) -> Result<Response<proto::CreditAccount>, Status> {
        self.call("GetCreditAccount", request, |caller, message| async move {
            let customer_id = id("customer_id", &message.customer_id)?;
            Ok(shared::credit::get_account(&self.state.app, &caller, customer_id).await?.into())
        })
        .await
    }

    async fn check_credit_availability(
        &self,
        request: Request<proto::CheckCreditAvailabilityRequest>,
    ) -> Result<Response<proto::CheckCreditAvailabilityResponse>, Status> {
        self.call("CheckCreditAvailability", request, |caller, message| async move {
            let customer_id = id("customer_id", &message.customer_id)?;
            let asked = amount("amount", &message.amount)?;
            Ok(shared::credit::check(&self.state.app, &caller, customer_id, asked).await?.into())
        })
        .await
    }

    async fn use_credit(
        &self,
        request: Request<proto::UseCreditRequest>,
    ) -> Result<Response<proto::UseCreditResponse>, Status> {
        self.call("UseCredit", request, |caller, message| async move {
            let customer_id = id("customer_id", &message.customer_id)?;
            let order_id = id("order_id", &message.order_id)?;
            let charged = amount("amount", &message.amount)?;
            let result = shared::credit::use_credit(&self.state.app, &caller, customer_id, order_id, charged).await?;
            let (usage, replayed) = written(result);
            Ok(proto::UseCreditResponse { usage: Some(usage), replayed })
        })
        .await
    }

    async fn release_credit(
        &self,
        request: Request<proto::ReleaseCreditRequest>,
    ) -> Result<Response<proto::CreditUsage>, Status> {
        self.call("ReleaseCredit", request, |caller, message| async move {
            let customer_id = id("customer_id", &message.customer_id)?;
            let order_id = id("order_id", &message.order_id)?;
            Ok(shared::credit::release(&self.state.app, &caller, customer_id, order_id).await?.into())
        })
        .await
    }

    async fn record_payment(
        &self,
        request: Request<proto::RecordPaymentRequest>,
    ) -> Result<Response<proto::RecordPaymentResponse>, Status> {
        self.call("RecordPayment", request, |caller, message| async move {
            let customer_id = id("customer_id", &message.customer_id)?;
            let payment = PaymentRequest {
                payment_id: message.payment_id.as_deref().map(|text| id("payment_id", text)).transpose()?,
                amount: amount("amount", &message.amount)?,
                payment_method: message
                    .payment_method
                    .parse()
                    .map_err(|_| ApiError::invalid("payment_method", "must be cash, card, transfer or check"))?,
                payment_reference: message.payment_reference,
                payment_date: message
                    .payment_date
                    .as_deref()
                    .map(|text| {
                        text.parse().map_err(|_| ApiError::invalid("payment_date", "must be a date (YYYY-MM-DD)"))
                    })
                    .transpose()?,
            }
            .validate(None)?;
            let result = shared::credit::record_payment(&self.state.app, &caller, customer_id, payment).await?;
            let (payment, replayed) = written(result);
            Ok(proto::RecordPaymentResponse { payment: Some(payment), replayed })
        })
        .await
    }
}
