/*
 * activities/procurement.h - the procurement system keel's workflows act on, as tools.
 *
 * Budgets per cost centre and period, the approved vendor list (certifications, categories),
 * vendor catalog prices and quotes, requisitions, purchase orders with idempotent PO numbers,
 * and the approver directory with delegation, all in keel's PostgreSQL
 * (activities/migrations/002_procurement.sql; demo data in activities/seed.sql).
 *
 * Each entry is a keel_tool (activities/tools.h): schema, risk level, scopes, function. Write
 * tools make their effect once per call->idempotency_key, enforced by unique constraints.
 */
#ifndef KEEL_ACTIVITIES_PROCUREMENT_H
#define KEEL_ACTIVITIES_PROCUREMENT_H

#include <stddef.h>

#include "activities/tools.h"

extern const keel_tool keel_procurement_tools[];
extern const size_t keel_procurement_tools_count;

#endif
