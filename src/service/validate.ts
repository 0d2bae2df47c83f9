/**
 * Request validation by schema: the protocol's JSON schemas compiled once with Ajv. Every transport reaches
 * the service through {@link validateCall}, so HTTP and the long connection's CALL validate identically.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { CALLS, RET, SynchatError, type CallPath } from '../protocol/index.ts';

const bodies = new Ajv({ allErrors: false, strict: true, coerceTypes: false });
// GET calls take their input from the query string: strings become numbers where the schema says so.
const queries = new Ajv({ allErrors: false, strict: true, coerceTypes: true });

const validators = new Map<string, ValidateFunction>();
for (const [path, spec] of Object.entries(CALLS)) {
  validators.set(path, (spec.method === 'GET' ? queries : bodies).compile(spec.schema));
}

function describe(err: ErrorObject | undefined): string {
  if (!err) return 'invalid request';
  const where = err.instancePath ? err.instancePath.slice(1).replace(/\//g, '.') : 'body';
  if (err.keyword === 'additionalProperties') return `${where}: unknown field "${String(err.params.additionalProperty)}"`;
  if (err.keyword === 'required') return `${where}: missing field "${String(err.params.missingProperty)}"`;
  return `${where}: ${err.message ?? 'invalid'}`;
}

/** Checks a request body (or query) against its call's schema; throws SynchatError(1) with a precise errMsg. */
export function validateCall(path: CallPath, body: unknown): Record<string, any> {
  const validate = validators.get(path)!;
  const input = body === undefined || body === null ? {} : body;
  if (typeof input !== 'object' || Array.isArray(input)) throw new SynchatError(RET.BAD_REQUEST, 'body must be a JSON object');
  if (!validate(input)) throw new SynchatError(RET.BAD_REQUEST, describe(validate.errors?.[0]));
  return input as Record<string, any>;
}
