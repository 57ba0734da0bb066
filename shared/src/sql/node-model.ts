/**
 * Which AST node kinds the classifier models, and how. Every node type of the @pgsql/types that
 * libpg-query bundles is in exactly one of the tables below (node-model.test.ts checks it against
 * the type definitions, so a parser upgrade that adds a node fails the test until it is placed):
 *   - STATEMENT_CLASS: statement kinds, with their class (some also have special handling in
 *     statement-walker.ts);
 *   - WALKED_NODES: expression and clause nodes whose meaning is the nodes inside them (the walk
 *     finds the relations, function calls and statements there);
 *   - NEVER_FROM_PARSER: planner/executor nodes and API wrappers the raw parser never produces.
 * A wrapper key met during the walk that is in neither of the first two denies the statement
 * ("unmodelled node"): nothing the classifier does not understand is waved through. Pure data.
 */
import type { StatementClass } from "../policy/bundle.js";

/** Statement node kind → class. Special handling in statement-walker.ts may refine it. */
export const STATEMENT_CLASS: Readonly<Record<string, StatementClass>> = {
  // read
  SelectStmt: "read", ExplainStmt: "read", DeclareCursorStmt: "read", PrepareStmt: "read",
  // write
  InsertStmt: "write", UpdateStmt: "write", DeleteStmt: "write", MergeStmt: "write",
  TruncateStmt: "write", LockStmt: "write", CallStmt: "write",
  // ddl
  CreateStmt: "ddl", CreateTableAsStmt: "ddl", ViewStmt: "ddl", IndexStmt: "ddl", CreateSeqStmt: "ddl",
  AlterSeqStmt: "ddl", CreateFunctionStmt: "ddl", AlterFunctionStmt: "ddl", CreateTrigStmt: "ddl",
  CreateSchemaStmt: "ddl", CreateEnumStmt: "ddl", AlterEnumStmt: "ddl", CompositeTypeStmt: "ddl",
  CreateDomainStmt: "ddl", AlterDomainStmt: "ddl", DefineStmt: "ddl", AlterTableStmt: "ddl",
  RenameStmt: "ddl", DropStmt: "ddl", CommentStmt: "ddl", AlterObjectSchemaStmt: "ddl",
  AlterOwnerStmt: "ddl", CreatePolicyStmt: "ddl", AlterPolicyStmt: "ddl", RuleStmt: "ddl",
  RefreshMatViewStmt: "ddl", CreateRangeStmt: "ddl", AlterTypeStmt: "ddl", CreateCastStmt: "ddl",
  CreateOpClassStmt: "ddl", CreateOpFamilyStmt: "ddl", AlterOpFamilyStmt: "ddl", AlterOperatorStmt: "ddl",
  CreateConversionStmt: "ddl", CreateTransformStmt: "ddl", CreateStatsStmt: "ddl", AlterStatsStmt: "ddl",
  AlterCollationStmt: "ddl", SecLabelStmt: "ddl", AlterTSDictionaryStmt: "ddl",
  AlterTSConfigurationStmt: "ddl", CreateAmStmt: "ddl", AlterTableMoveAllStmt: "ddl",
  AlterObjectDependsStmt: "ddl", CreateForeignTableStmt: "ddl",
  // admin
  GrantStmt: "admin", GrantRoleStmt: "admin", AlterDefaultPrivilegesStmt: "admin",
  CreateRoleStmt: "admin", AlterRoleStmt: "admin", AlterRoleSetStmt: "admin", DropRoleStmt: "admin",
  CreatedbStmt: "admin", AlterDatabaseStmt: "admin", AlterDatabaseSetStmt: "admin",
  AlterDatabaseRefreshCollStmt: "admin", DropdbStmt: "admin", CreateTableSpaceStmt: "admin",
  DropTableSpaceStmt: "admin", AlterTableSpaceOptionsStmt: "admin", AlterSystemStmt: "admin",
  VacuumStmt: "admin", ClusterStmt: "admin", ReindexStmt: "admin", CheckPointStmt: "admin",
  LoadStmt: "admin", CreateExtensionStmt: "admin", AlterExtensionStmt: "admin",
  AlterExtensionContentsStmt: "admin", CreateFdwStmt: "admin", AlterFdwStmt: "admin",
  CreateForeignServerStmt: "admin", AlterForeignServerStmt: "admin", CreateUserMappingStmt: "admin",
  AlterUserMappingStmt: "admin", DropUserMappingStmt: "admin", ImportForeignSchemaStmt: "admin",
  CreatePublicationStmt: "admin", AlterPublicationStmt: "admin", CreateSubscriptionStmt: "admin",
  AlterSubscriptionStmt: "admin", DropSubscriptionStmt: "admin", CreateEventTrigStmt: "admin",
  AlterEventTrigStmt: "admin", CreatePLangStmt: "admin", ReassignOwnedStmt: "admin",
  DropOwnedStmt: "admin", ReplicaIdentityStmt: "admin",
  // utility
  VariableSetStmt: "utility", VariableShowStmt: "utility", TransactionStmt: "utility", ListenStmt: "utility",
  NotifyStmt: "utility", UnlistenStmt: "utility", DeallocateStmt: "utility", DiscardStmt: "utility",
  FetchStmt: "utility", ClosePortalStmt: "utility", ConstraintsSetStmt: "utility", ExecuteStmt: "utility",
  DoStmt: "utility",
  // copy
  CopyStmt: "copy",
  // the body of `CREATE FUNCTION … RETURN expr`: its expression, nothing of its own
  ReturnStmt: "read",
};

/** Expression and clause nodes the generic walk models: their meaning is what is inside them. */
export const WALKED_NODES: ReadonlySet<string> = new Set([
  // values and names
  "Integer", "Float", "Boolean", "String", "BitString", "List", "A_Const", "Alias", "TypeName", "ColumnRef",
  "ParamRef", "A_Star", "A_Indices", "A_Indirection", "RoleSpec", "CollateClause", "ObjectWithArgs", "AccessPriv",
  // expressions (operators and casts resolve to functions by the catalog: see the classifier's known limits)
  "A_Expr", "TypeCast", "A_ArrayExpr", "BoolExpr", "SubLink", "CaseExpr", "CaseWhen", "RowExpr", "CoalesceExpr",
  "MinMaxExpr", "SQLValueFunction", "XmlExpr", "XmlSerialize", "NullTest", "BooleanTest", "NamedArgExpr",
  "GroupingFunc", "SetToDefault", "CurrentOfExpr", "MergeSupportFunc", "MultiAssignRef",
  // SQL/JSON
  "JsonFormat", "JsonReturning", "JsonValueExpr", "JsonIsPredicate", "JsonBehavior", "JsonOutput", "JsonArgument",
  "JsonFuncExpr", "JsonTablePathSpec", "JsonTable", "JsonTableColumn", "JsonKeyValue", "JsonParseExpr",
  "JsonScalarExpr", "JsonSerializeExpr", "JsonObjectConstructor", "JsonArrayConstructor",
  "JsonArrayQueryConstructor", "JsonAggConstructor", "JsonObjectAgg", "JsonArrayAgg",
  // query clauses
  "ResTarget", "SortBy", "WindowDef", "RangeSubselect", "RangeFunction", "RangeTableFunc", "RangeTableFuncCol",
  "RangeTableSample", "JoinExpr", "IntoClause", "LockingClause", "WithClause", "CommonTableExpr",
  "CTESearchClause", "CTECycleClause", "InferClause", "OnConflictClause", "MergeWhenClause", "ReturningClause",
  "ReturningOption", "GroupingSet",
  // DDL parts
  "ColumnDef", "TableLikeClause", "IndexElem", "DefElem", "Constraint", "PartitionElem", "PartitionSpec",
  "PartitionBoundSpec", "PartitionRangeDatum", "PartitionCmd", "AlterTableCmd", "ATAlterConstraint",
  "TriggerTransition", "FunctionParameter", "StatsElem", "VacuumRelation", "PublicationTable",
  "PublicationObjSpec", "CreateOpClassItem",
]);

/** Relations and function calls: modelled by the walk itself (tables, functions). */
export const WALK_SPECIAL_NODES: ReadonlySet<string> = new Set(["RangeVar", "FuncCall"]);

/**
 * Nodes libpg-query's raw parser never emits (planner and executor trees, API result wrappers, the
 * PL/pgSQL assignment form that only the PL/pgSQL compiler asks for): met in a tree, they deny.
 */
export const NEVER_FROM_PARSER: ReadonlySet<string> = new Set([
  "ParseResult", "ScanResult", "ScanToken", "SummaryResult", "Table", "Function", "FilterColumn", "RawStmt",
  "OidList", "IntList", "TableFunc", "Var", "Param", "Aggref", "WindowFunc", "WindowFuncRunCondition",
  "SubscriptingRef", "FuncExpr", "OpExpr", "DistinctExpr", "NullIfExpr", "ScalarArrayOpExpr", "SubPlan",
  "AlternativeSubPlan", "FieldSelect", "FieldStore", "RelabelType", "CoerceViaIO", "ArrayCoerceExpr",
  "ConvertRowtypeExpr", "CollateExpr", "CaseTestExpr", "ArrayExpr", "RowCompareExpr", "JsonConstructorExpr",
  "JsonExpr", "JsonTablePath", "JsonTablePathScan", "JsonTableSiblingJoin", "MergeAction", "CoerceToDomain",
  "CoerceToDomainValue", "NextValueExpr", "InferenceElem", "ReturningExpr", "TargetEntry", "RangeTblRef",
  "FromExpr", "OnConflictExpr", "Query", "RangeTblEntry", "RTEPermissionInfo", "RangeTblFunction",
  "TableSampleClause", "WithCheckOption", "SortGroupClause", "WindowClause", "RowMarkClause",
  "SetOperationStmt", "PLAssignStmt", "InlineCodeBlock", "CallContext",
]);

/**
 * PL/pgSQL tree nodes (libpg-query's PL/pgSQL dump: one per PLpgSQL_stmt_type of plpgsql.h plus the
 * function, its datums and the statements' parts). Their SQL is in PLpgSQL_expr nodes, which the
 * PL/pgSQL walker classifies; any other PLpgSQL_ node denies.
 */
export const PLPGSQL_NODES: ReadonlySet<string> = new Set([
  "PLpgSQL_function", "PLpgSQL_var", "PLpgSQL_row", "PLpgSQL_rec", "PLpgSQL_recfield", "PLpgSQL_type",
  "PLpgSQL_alias", "PLpgSQL_expr", "PLpgSQL_exception_block", "PLpgSQL_exception", "PLpgSQL_condition",
  "PLpgSQL_if_elsif", "PLpgSQL_case_when", "PLpgSQL_raise_option", "PLpgSQL_diag_item",
  "PLpgSQL_stmt_block", "PLpgSQL_stmt_assign", "PLpgSQL_stmt_if", "PLpgSQL_stmt_case", "PLpgSQL_stmt_loop",
  "PLpgSQL_stmt_while", "PLpgSQL_stmt_fori", "PLpgSQL_stmt_fors", "PLpgSQL_stmt_forc", "PLpgSQL_stmt_foreach_a",
  "PLpgSQL_stmt_exit", "PLpgSQL_stmt_return", "PLpgSQL_stmt_return_next", "PLpgSQL_stmt_return_query",
  "PLpgSQL_stmt_raise", "PLpgSQL_stmt_assert", "PLpgSQL_stmt_execsql", "PLpgSQL_stmt_dynexecute",
  "PLpgSQL_stmt_dynfors", "PLpgSQL_stmt_getdiag", "PLpgSQL_stmt_open", "PLpgSQL_stmt_fetch",
  "PLpgSQL_stmt_close", "PLpgSQL_stmt_perform", "PLpgSQL_stmt_call", "PLpgSQL_stmt_commit",
  "PLpgSQL_stmt_rollback",
]);
