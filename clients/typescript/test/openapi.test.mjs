// The client's types against the server's OpenAPI document (docs/openapi.json, generated from
// the Rust handlers' types): every property the server describes is in the matching
// TypeScript interface and the other way round, and no property the server requires is
// optional here. Read with the TypeScript compiler's own parser, so the check sees the types
// exactly as `tsc` does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const document = JSON.parse(readFileSync(path.join(HERE, '..', '..', '..', 'docs', 'openapi.json'), 'utf8'));
const schemas = document.components.schemas;

/** TypeScript interface -> the OpenAPI schema it mirrors. */
const PAIRS = {
  EndUser: 'EndUserView',
  CreateConnectSession: 'CreateSession',
  ConnectSession: 'SessionCreated',
  Connection: 'ConnectionView',
  ConnectionAccount: 'AccountView',
  VerifyResult: 'VerifyView',
  Credentials: 'CredentialsView',
  ImportConnection: 'ImportBody',
  Integration: 'IntegrationView',
  IntegrationOAuth2: 'OAuth2View',
  ProviderField: 'FieldView',
  Provider: 'ProviderView',
  ProviderItem: 'ItemView',
  WebhookDelivery: 'DeliveryView',
  ConnectionEvent: 'ConnectionEventView',
  ConnectionEventList: 'ConnectionEventList',
  Problem: 'Problem',
  AgentAuthorizationRequest: 'AuthorizationRequestView',
  ApproveAgentAuthorization: 'Approve',
  AgentAuthorizationRedirect: 'RedirectTo',
  CreateAgentToken: 'CreateAgentToken',
  AgentTokenCreated: 'AgentTokenCreated',
  AgentToken: 'AgentTokenView',
};

/** Every interface of src/types.ts: its properties and which are optional. */
function interfaces() {
  const file = path.join(HERE, '..', 'src', 'types.ts');
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const found = {};
  source.forEachChild((node) => {
    if (!ts.isInterfaceDeclaration(node)) return;
    const properties = {};
    for (const member of node.members) {
      if (ts.isPropertySignature(member)) {
        properties[member.name.getText(source)] = { optional: !!member.questionToken };
      }
    }
    found[node.name.text] = properties;
  });
  return found;
}

test('the client\'s types match the OpenAPI document', () => {
  const declared = interfaces();
  for (const [tsName, schemaName] of Object.entries(PAIRS)) {
    const schema = schemas[schemaName];
    assert.ok(schema, `the document has no schema ${schemaName}`);
    const properties = declared[tsName];
    assert.ok(properties, `src/types.ts has no interface ${tsName}`);
    const described = Object.keys(schema.properties ?? {}).sort();
    const typed = Object.keys(properties).sort();
    assert.deepEqual(typed, described, `${tsName} and ${schemaName} name different properties`);
    for (const name of schema.required ?? []) {
      assert.equal(properties[name].optional, false, `${tsName}.${name} is required by the server`);
    }
  }
});
