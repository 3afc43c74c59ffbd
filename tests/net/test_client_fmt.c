/*
 * test_client_fmt.c -- how `footfall` prints answers (net/client_fmt.c): the count
 * line, bucket tables and CSV, the topology summary, problem documents, tables.
 */
#include "net/client_fmt.h"

#include <criterion/criterion.h>
#include <string.h>

static json_t *J(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, 0, &e);
    cr_assert_not_null(j, "bad test JSON: %s", e.text);
    return j;
}

static ff_buf out;

static void setup(void)
{
    ff_buf_init(&out);
}

static void teardown(void)
{
    ff_buf_release(&out);
}

TestSuite(client_fmt, .init = setup, .fini = teardown);

Test(client_fmt, count_line)
{
    json_t *c = J("{\"space_id\":1,\"name\":\"Space A\",\"at\":\"2018-03-02T16:39:37.240Z\","
                  "\"occupancy\":-2,\"status\":\"settled\",\"revision\":0}");
    ff_cli_count_line(&out, c);
    cr_assert_str_eq(out.p,
                     "Space A  occupancy -2  at 2018-03-02T16:39:37.240Z  settled  revision 0\n");
    json_decref(c);
}

Test(client_fmt, count_line_with_missing_fields)
{
    json_t *c = J("{\"space_id\":7,\"at\":null,\"occupancy\":0,\"status\":\"pending\"}");
    ff_cli_count_line(&out, c);
    cr_assert_str_eq(out.p, "7  occupancy 0  at -  pending  revision -\n");
    json_decref(c);
}

static const char counts_doc[] =
    "{\"space_id\":2,\"name\":\"Space B\",\"interval\":\"1h\",\"revision\":3,\"buckets\":["
    "{\"start\":\"2018-02-26T00:00:00.000Z\",\"end\":\"2018-02-26T01:00:00.000Z\","
    "\"occupancy_start\":0,\"occupancy_end\":12,\"min\":0,\"max\":12,\"entrances\":12,"
    "\"exits\":0,\"status\":\"settled\"},"
    "{\"start\":\"2018-02-26T01:00:00.000Z\",\"end\":\"2018-02-26T01:30:00.000Z\","
    "\"occupancy_start\":12,\"occupancy_end\":-3,\"min\":-3,\"max\":12,\"entrances\":0,"
    "\"exits\":15,\"status\":\"pending\"}]}";

Test(client_fmt, counts_table_is_aligned)
{
    json_t *c = J(counts_doc);
    ff_cli_counts_table(&out, c);
    cr_assert_str_eq(
        out.p,
        "Space B  interval 1h  revision 3\n"
        "start                     end                       occ_start  occ_end  min  max  in  "
        "out  status\n"
        "2018-02-26T00:00:00.000Z  2018-02-26T01:00:00.000Z          0       12    0   12  12  "
        "  0  settled\n"
        "2018-02-26T01:00:00.000Z  2018-02-26T01:30:00.000Z         12       -3   -3   12   0  "
        " 15  pending\n");
    json_decref(c);
}

Test(client_fmt, counts_csv)
{
    json_t *c = J(counts_doc);
    ff_cli_counts_csv(&out, c);
    cr_assert_str_eq(
        out.p, "start,end,occupancy_start,occupancy_end,min,max,entrances,exits,status\n"
               "2018-02-26T00:00:00.000Z,2018-02-26T01:00:00.000Z,0,12,0,12,12,0,settled\n"
               "2018-02-26T01:00:00.000Z,2018-02-26T01:30:00.000Z,12,-3,-3,12,0,15,pending\n");
    json_decref(c);
}

Test(client_fmt, counts_without_buckets)
{
    json_t *c = J("{\"name\":\"X\"}");
    ff_cli_counts_csv(&out, c);
    cr_assert_str_eq(out.p, "start,end,occupancy_start,occupancy_end,min,max,entrances,exits,"
                            "status\n");
    json_decref(c);
}

Test(client_fmt, topology_summary)
{
    json_t *s = J("{\"spaces\":[{\"id\":1,\"name\":\"Space A\",\"capacity\":null,"
                  "\"clamp_at_zero\":false,\"occupancy\":-2,\"status\":\"settled\",\"revision\":0},"
                  "{\"id\":2,\"name\":\"Café\",\"capacity\":40,\"clamp_at_zero\":true,"
                  "\"occupancy\":8,\"status\":\"pending\",\"revision\":12}]}");
    json_t *d = J("{\"doorways\":[{\"id\":1,\"name\":\"Doorway X\"},{\"id\":2,\"name\":\"Z\"}]}");
    json_t *u = J("{\"dpus\":[{\"id\":283,\"assignments\":[{\"doorway_id\":1,\"entry_space_id\":1,"
                  "\"exit_space_id\":null,\"effective_from\":null}]},"
                  "{\"id\":423,\"assignments\":[{\"doorway_id\":2,\"entry_space_id\":1,"
                  "\"exit_space_id\":2,\"effective_from\":null},{\"doorway_id\":2,"
                  "\"entry_space_id\":2,\"exit_space_id\":9,"
                  "\"effective_from\":\"2018-03-01T00:00:00.000Z\"}]},"
                  "{\"id\":5,\"assignments\":[]}]}");
    ff_cli_topology(&out, s, d, u);
    cr_assert_str_eq(
        out.p, "Spaces (2)\n"
               "  id  name     capacity  clamp_at_zero  occupancy  status   revision\n"
               "   1  Space A         -  no                    -2  settled         0\n"
               "   2  Café           40  yes                    8  pending        12\n"
               "\n"
               "Doorways (2)\n"
               "  id  name\n"
               "   1  Doorway X\n"
               "   2  Z\n"
               "\n"
               "DPUs (3)\n"
               "  dpu  doorway      entry (+1 into)  exit (+1 out of)  effective_from\n"
               "  283  1 Doorway X  1 Space A        -                 beginning of time\n"
               "  423  2 Z          1 Space A        2 Café            beginning of time\n"
               "       2 Z          2 Café           9                 2018-03-01T00:00:00.000Z\n"
               "    5  -            -                -                 -\n");
    json_decref(s);
    json_decref(d);
    json_decref(u);
}

Test(client_fmt, topology_of_nothing)
{
    ff_cli_topology(&out, NULL, NULL, NULL);
    cr_assert_str_eq(out.p, "Spaces (0)\n"
                            "  id  name  capacity  clamp_at_zero  occupancy  status  revision\n\n"
                            "Doorways (0)\n  id  name\n\n"
                            "DPUs (0)\n  dpu  doorway  entry (+1 into)  exit (+1 out of)  "
                            "effective_from\n");
}

static void problem(int status, const char *body, const char *want)
{
    ff_http_response r = {.status = status, .body = body, .body_len = strlen(body)};
    ff_buf_reset(&out);
    ff_cli_problem(&out, &r);
    cr_assert_str_eq(out.p ? out.p : "", want);
}

Test(client_fmt, problems)
{
    problem(404,
            "{\"type\":\"urn:footfall:problem:not-found\",\"title\":\"Not Found\",\"status\":404,"
            "\"detail\":\"no space with id 9\"}",
            "Not Found: no space with id 9");
    problem(401, "{\"title\":\"Unauthorized\"}", "Unauthorized");
    problem(400, "{\"detail\":\"bad interval\"}", "HTTP 400: bad interval");
    problem(502, "<html>Bad gateway</html>\nmore", "HTTP 502: <html>Bad gateway</html>");
    problem(500, "", "HTTP 500");
}

Test(client_fmt, table_alignment)
{
    const char *h[] = {"a", "long header", "n"};
    const bool num[] = {false, false, true};
    ff_table *t = ff_table_new(3, h, num);
    const char *r1[] = {"xyz", "", "1234"};
    const char *r2[] = {NULL, "é", "5"};
    ff_table_add(t, r1);
    ff_table_add(t, r2);
    ff_table_write(t, &out, 1);
    ff_table_free(t);
    cr_assert_str_eq(out.p, " a    long header     n\n"
                            " xyz               1234\n"
                            " -    é               5\n");
}
