import { TideError } from '../../errors.ts';

/**
 * Errors of the dashboard's HTTP API. Each carries the HTTP status it maps to, names the parameter or
 * object at fault and says what to do; the page shows the message as is.
 */
export class DashboardRequestError extends TideError {
  constructor(
    readonly status: 400 | 404 | 405,
    readonly parameter: string,
    message: string,
  ) {
    super(`${parameter}: ${message}`);
    this.name = 'DashboardRequestError';
  }
}

/** Reading a gold table from the lake failed (not a bad request): the table, and what to check. */
export class GoldReadError extends TideError {
  constructor(
    readonly table: string,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(`gold.${table}: ${message}`, { ...options, retriable: true });
    this.name = 'GoldReadError';
  }
}
