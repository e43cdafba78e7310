/**
 * The operator's version: printed by --version, sent as the User-Agent, served as build info.
 * @module
 */

/** This build's version. */
export const OPERATOR_VERSION = "0.1.0";
