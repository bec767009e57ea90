//! Seed 003's clients: its pings, and its blocks fetched, updated (the bodies of its cURL,
//! JavaScript, Python and C# clients, the C# `null`s included) and deleted, each answer
//! read field by field as the clients read them.

use relais::domain::auth::{NewToken, Scope};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{assert_same, assert_shaped_but_nulls, ok, time};
use crate::both_backends;
use crate::common::{Backend, TestApp};

both_backends!(
    the_pings_answer_as_the_seed_shows,
    blocks_as_the_seed_clients_use_them
);

/// `/api/{tenant}/{project}{path}`: seed 003's paths carry no `/async`.
fn at(app: &TestApp, path: &str) -> String {
    format!("/api/{}/{}{path}", app.tenant, app.project)
}

async fn the_pings_answer_as_the_seed_shows(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let open = app
        .call(
            Method::GET,
            &at(&app, "/block/unauthorized-ping"),
            None,
            None,
        )
        .await;
    assert_eq!(open.status, StatusCode::OK);
    assert_eq!(open.text, "Ping Successful");
    let signed = app.get(&at(&app, "/block/ping")).await;
    assert_eq!(signed.status, StatusCode::OK);
    assert_eq!(
        signed.text,
        format!("Ping Successful (tenant id: {})", app.tenant)
    );
    let refused = app
        .call(Method::GET, &at(&app, "/block/ping"), None, None)
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Bearer")),
        "the message of the failure: {}",
        refused.text
    );
    let bad = app
        .call(Method::GET, &at(&app, "/block/ping"), Some("nope"), None)
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED, "{}", bad.text);
}

/// A token named as a person would name it: blocks say who created and changed them.
async fn named_token(app: &TestApp, name: &str) -> String {
    let token = NewToken::from_random(rand::random());
    app.store()
        .tenants()
        .insert_named_token(
            app.tenant,
            Some(app.project),
            &[Scope::Admin],
            &token.hash,
            Some(name),
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    token.secret
}

async fn put(app: &TestApp, token: &str, path: &str, body: &Value) -> crate::common::Response {
    app.call(Method::PUT, path, Some(token), Some(body)).await
}

async fn blocks_as_the_seed_clients_use_them(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let example = seed!("003/block.200.response.json");
    let creator = named_token(&app, "user@example.com").await;
    let editor = named_token(&app, "editor@example.com").await;
    let notebook = ok(
        app.call(
            Method::POST,
            &at(&app, "/notebook"),
            Some(&creator),
            Some(&json!({"notebookName": "Sales checks"})),
        )
        .await,
        StatusCode::CREATED,
        "create notebook",
    )
    .await;
    let notebook_id = notebook["notebookId"].as_str().unwrap().to_owned();
    // The block of the seed's example, created through the notebook as the seed says.
    let created = ok(
        app.call(
            Method::POST,
            &at(&app, &format!("/notebook/{notebook_id}/blocks")),
            Some(&creator),
            Some(&json!({
                "blockType": example["blockType"],
                "blockTitle": example["blockTitle"],
                "blockDescription": example["blockDescription"],
                "blockOrder": example["blockOrder"],
                "configuration": example["configuration"],
                "isDisabled": example["isDisabled"],
            })),
        )
        .await,
        StatusCode::CREATED,
        "create block",
    )
    .await;
    let id = created["blockId"].as_str().unwrap().to_owned();
    let path = at(&app, &format!("/block/{id}"));

    // getBlock / get_block / GetBlockAsync: every field of the seed, of its type; before
    // any run, the last execution is null (the C# client's `DateTime?`).
    let block = ok(app.get(&path).await, StatusCode::OK, "get block").await;
    assert_shaped_but_nulls(
        "block",
        &example,
        &block,
        &[],
        &["lastExecutionDate", "lastExecutionStatus"],
    );
    for field in [
        "blockType",
        "blockTitle",
        "blockDescription",
        "blockOrder",
        "configuration",
        "isDisabled",
    ] {
        assert_same(&block[field], &example[field], field);
    }
    assert_eq!(block["notebookId"], json!(notebook_id));
    assert_eq!(block["createdBy"], "user@example.com");
    assert_eq!(block["modifiedBy"], "user@example.com");
    assert_eq!(block["executionCount"], 0);
    // As the C# client reads it: GUIDs, DateTimes, an int.
    uuid::Uuid::parse_str(block["blockId"].as_str().unwrap()).expect("a GUID");
    uuid::Uuid::parse_str(block["notebookId"].as_str().unwrap()).expect("a GUID");
    assert!(time(&block["dateCreated"]) <= time(&block["dateModified"]));
    assert!(block["executionCount"]
        .as_i64()
        .is_some_and(|n| n <= i32::MAX as i64));

    // Each client's update body, as it sends it.
    let bodies = [
        ("main", seed!("003/update_block.request.json")),
        ("cURL", seed!("003/update_block.curl.request.json")),
        ("JavaScript", seed!("003/update_block.js.request.json")),
        ("Python", seed!("003/update_block.py.request.json")),
    ];
    let mut description = example["blockDescription"].clone();
    for (client, body) in bodies {
        let updated = ok(
            put(&app, &editor, &path, &body).await,
            StatusCode::OK,
            client,
        )
        .await;
        if let Some(given) = body.get("blockDescription") {
            description = given.clone();
        }
        assert_eq!(updated["blockTitle"], body["blockTitle"], "{client}");
        assert_eq!(updated["isDisabled"], body["isDisabled"], "{client}");
        assert_eq!(updated["blockDescription"], description, "{client}: kept");
        assert_eq!(updated["modifiedBy"], "editor@example.com");
        assert_eq!(updated["createdBy"], "user@example.com");
        assert_shaped_but_nulls(
            client,
            &example,
            &updated,
            &[],
            &["lastExecutionDate", "lastExecutionStatus"],
        );
        let fetched = ok(app.get(&path).await, StatusCode::OK, "get").await;
        assert_eq!(fetched["blockTitle"], body["blockTitle"]);
    }
    // The C# client sends its `null`s: they change nothing.
    let cs = seed!("003/update_block.cs.request.json");
    let disabled = ok(
        put(&app, &editor, &path, &json!({"isDisabled": true})).await,
        StatusCode::OK,
        "disable",
    )
    .await;
    assert_eq!(disabled["isDisabled"], true);
    let updated = ok(put(&app, &editor, &path, &cs).await, StatusCode::OK, "C#").await;
    assert_eq!(updated["blockTitle"], cs["blockTitle"]);
    assert_eq!(updated["blockDescription"], description, "null keeps it");
    assert_eq!(updated["isDisabled"], true, "null keeps it");

    // A refused update: the seed's plain-text 400, the reason in a header.
    let refused = put(&app, &editor, &path, &json!({"blockTitle": "  "})).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.text, "Failed to update block.");
    let reason = refused.headers["x-relais-error"].to_str().unwrap();
    assert!(reason.starts_with("blockTitle"), "{reason}");
    let unknown_field = put(&app, &editor, &path, &json!({"blockColour": "red"})).await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown_field.text, "Failed to update block.");
    assert!(unknown_field.headers["x-relais-error"]
        .to_str()
        .unwrap()
        .contains("blockColour"));

    // Unknown blocks: the seed's 404, exactly, for every method.
    let missing = "550e8400-e29b-41d4-a716-446655440000";
    let expected = seed!("003/block.404.response.json");
    let gone_path = at(&app, &format!("/block/{missing}"));
    for r in [
        app.get(&gone_path).await,
        put(&app, &editor, &gone_path, &json!({"blockTitle": "x"})).await,
        app.delete(&gone_path, None).await,
    ] {
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
        assert_eq!(r.body, expected);
    }

    // deleteBlock: 204, then the block is gone.
    let deleted = app.delete(&path, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text);
    let after = app.get(&path).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND);
    assert_eq!(
        after.body,
        json!({"Error": "Block not found", "BlockId": id})
    );
}
