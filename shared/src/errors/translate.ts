import type { ErrorCode } from "./sluice-error.js";

/** gRPC status codes (grpc/status.h); numeric so shared/ needs no grpc import. */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export function toGrpcStatus(code: ErrorCode): number {
  switch (code) {
    case "invalid_argument": return GrpcStatus.INVALID_ARGUMENT;
    case "not_found": return GrpcStatus.NOT_FOUND;
    case "already_exists": return GrpcStatus.ALREADY_EXISTS;
    case "failed_precondition": return GrpcStatus.FAILED_PRECONDITION;
    case "aborted": return GrpcStatus.ABORTED;
    case "permission_denied": return GrpcStatus.PERMISSION_DENIED;
    case "unauthenticated": return GrpcStatus.UNAUTHENTICATED;
    case "unavailable": return GrpcStatus.UNAVAILABLE;
    case "resource_exhausted": return GrpcStatus.RESOURCE_EXHAUSTED;
    case "deadline_exceeded": return GrpcStatus.DEADLINE_EXCEEDED;
    case "internal": return GrpcStatus.INTERNAL;
    default: { const never: never = code; throw new Error(`unhandled code ${String(never)}`); }
  }
}

export function fromGrpcStatus(status: number): ErrorCode {
  switch (status) {
    case GrpcStatus.INVALID_ARGUMENT: case GrpcStatus.OUT_OF_RANGE: return "invalid_argument";
    case GrpcStatus.NOT_FOUND: return "not_found";
    case GrpcStatus.ALREADY_EXISTS: return "already_exists";
    case GrpcStatus.FAILED_PRECONDITION: return "failed_precondition";
    case GrpcStatus.ABORTED: return "aborted";
    case GrpcStatus.PERMISSION_DENIED: return "permission_denied";
    case GrpcStatus.UNAUTHENTICATED: return "unauthenticated";
    case GrpcStatus.UNAVAILABLE: return "unavailable";
    case GrpcStatus.RESOURCE_EXHAUSTED: return "resource_exhausted";
    case GrpcStatus.DEADLINE_EXCEEDED: return "deadline_exceeded";
    default: return "internal";
  }
}

/**
 * SQLSTATE for a data-plane ErrorResponse.
 *  42501 insufficient_privilege, 28P01 invalid_password, 28000 invalid_authorization_specification,
 *  57P03 cannot_connect_now, 22023 invalid_parameter_value, 3D000 invalid_catalog_name,
 *  53300 too_many_connections, 57014 query_canceled, 08P01 protocol_violation, XX000 internal_error.
 */
export function toSqlState(code: ErrorCode): string {
  switch (code) {
    case "permission_denied": return "42501";
    case "unauthenticated": return "28P01";
    case "unavailable": return "57P03";
    case "invalid_argument": return "22023";
    case "not_found": return "3D000";
    case "resource_exhausted": return "53300";
    case "deadline_exceeded": return "57014";
    case "failed_precondition": return "55000";
    case "aborted": return "40001";
    case "already_exists": return "42710";
    case "internal": return "XX000";
    default: { const never: never = code; throw new Error(`unhandled code ${String(never)}`); }
  }
}

/** CLI exit code: 2 is reserved for usage errors, decided by the CLI parser itself. */
export function toExitCode(_code: ErrorCode): number {
  return 1;
}
