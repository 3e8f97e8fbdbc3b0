//! The console's webhook deliveries: the newest ones with their attempts, and redelivery.

use super::*;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct WebhookQuery {
    status: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "console/webhooks.html")]
pub(super) struct WebhooksPage {
    frame: Frame,
    configured: bool,
    rows: Vec<(DeliveryItem, String, String)>,
    status: String,
}

pub(super) async fn webhooks<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    query: Result<Query<WebhookQuery>, QueryRejection>,
) -> Response {
    let operator = match viewer(&state, &headers).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    let query = query.map(|q| q.0).unwrap_or_default();
    let status_text = non_empty(query.status);
    let status = match status_text.as_deref().map(WebhookStatus::parse) {
        None => None,
        Some(Some(status)) => Some(status),
        Some(None) => {
            return message(
                &state,
                Some(&operator),
                StatusCode::BAD_REQUEST,
                "Unknown status",
                "A delivery status is one of pending, delivered or failed.",
            );
        }
    };
    let rows = match state
        .store
        .list_webhook_events(&WebhookEventFilter {
            connection_id: None,
            status,
            limit: 200,
        })
        .await
    {
        Ok(rows) => rows,
        Err(err) => return internal(&state, "deliveries", &err),
    };
    let frame =
        Frame::new(&state, Some(&operator), "webhooks").with_notice(query.notice.as_deref());
    let nonce = frame.nonce.clone();
    let body = WebhooksPage {
        frame,
        configured: state.config.webhooks.is_some(),
        rows: rows
            .iter()
            .map(|r| {
                (
                    delivery(&state, r),
                    r.connection_id.clone(),
                    dashboard_url(&state, &["connections", &r.connection_id], &[]),
                )
            })
            .collect(),
        status: status_text.unwrap_or_default(),
    };
    page(StatusCode::OK, &nonce, body.render())
}

pub(super) async fn redeliver<S: Store>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Response {
    let operator = match authorize_action(&state, &headers, &form).await {
        Ok(operator) => operator,
        Err(response) => return response,
    };
    if state.config.webhooks.is_none() {
        return see_other(&dashboard_url(
            &state,
            &["webhooks"],
            &[("notice", "webhooks_off")],
        ));
    }
    match state
        .store
        .redeliver_webhook_event(&id, state.clock.now())
        .await
    {
        Ok(true) => {
            state.webhook_wake.notify_one();
            tracing::info!(event_id = %id, "console: webhook redelivery queued");
            see_other(&dashboard_url(
                &state,
                &["webhooks"],
                &[("notice", "redelivered")],
            ))
        }
        Ok(false) => message(
            &state,
            Some(&operator),
            StatusCode::NOT_FOUND,
            "No such delivery",
            "No webhook delivery has this id.",
        ),
        Err(err) => internal(&state, "redeliver", &err),
    }
}
