// Where the appliance listens and keeps its data, and the API's path. The appliance and the CLI
// both need these and must agree; kept free of Fastify so `vmvault <command>` starts without
// loading the server.

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 7070;
export const DEFAULT_LISTEN = `${DEFAULT_HOST}:${DEFAULT_PORT}`;
export const DEFAULT_URL = `http://${DEFAULT_LISTEN}`;
export const DEFAULT_DATA_DIR = './vmvault-data';
export const API_PREFIX = '/api/v1';
