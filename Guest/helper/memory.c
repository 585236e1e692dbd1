// SPDX-License-Identifier: GPL-2.0
/*
 * sparc_helper: where the kernel keeps the state of free memory and of swap, so that the
 * host can read that state from the paused guest's RAM itself.
 *
 * Free pages and free swap slots must never reach a checkpoint (a process that exited
 * leaves its secret in them), but which pages are free changes until the very moment the
 * guest pauses. So the helper copies nothing and decides nothing: it says where the answer
 * will be — the struct pages of every frame (the memmap, in physical runs), the per-CPU free
 * lists, each swap area's usage map and extents — and the host reads the allocator's own
 * records out of the paused RAM, exactly as the restored kernel will find them.
 *
 * "layout SWAP_INFO NR_SWAPFILES" (kernel addresses from /proc/kallsyms, 0 if unknown; the
 * static swap_info[] is not exported) answers one fact per line:
 *
 *   page SIZE FLAGS PRIVATE TYPE REFCOUNT LRU   struct page: size and field offsets
 *   buddy TYPE_BASE PG_BUDDY MAX_ORDER          PageBuddy(page) and the largest order
 *   pageflags SWAPCACHE SWAPBACKED HEAD         page flag bit numbers
 *   vmemmap ADDRESS                             virtual address of pfn 0's struct page
 *   memmap PFN COUNT PHYS                       struct pages of PFN.. lie at PHYS..
 *   pcp ORDER HEAD_VIRT HEAD_PHYS               a per-CPU free list and its pages' order
 *   poison 0|1  initonfree 0|1                  what the kernel writes into freed pages
 *   swapshift SHIFT                             swp_entry_t: type << SHIFT | offset
 *   swaparea TYPE DISK START_SECTOR MAX         an active swap area, on DISK from that sector
 *   swapextent TYPE FIRST_SLOT SLOTS BLOCK      slots FIRST.. lie at page BLOCK.. of the area's device
 *   swapmap TYPE FIRST_SLOT PHYS LEN            usage bytes of slots FIRST.. lie at PHYS
 *   check PHYS VALUE                            the 8 bytes at PHYS must still hold VALUE
 *   noswap REASON                               why swap areas are not described
 *
 * Numbers are hexadecimal. Every physical address comes from the kernel's page tables.
 */
#include "sparc_helper.h"
#include <linux/swap.h>
#include <linux/blkdev.h>
#include <linux/swapops.h>
#include <linux/rbtree.h>
#include <linux/kallsyms.h>
#include <linux/percpu-refcount.h>
#include <linux/nodemask.h>
#include <linux/mm_inline.h>
#include <asm/pgtable.h>

#ifdef CONFIG_X86

/* The physical address behind a kernel virtual address, if it is mapped (a
 * slow_virt_to_phys that answers instead of BUG()ing on an unmapped address). */
static bool kernel_phys(unsigned long addr, phys_addr_t *phys)
{
	unsigned int level;
	pte_t *pte = lookup_address(addr, &level);

	if (!pte || !pte_present(*pte))
		return false;
	switch (level) {
	case PG_LEVEL_1G:
		*phys = ((phys_addr_t)pud_pfn(*(pud_t *)pte) << PAGE_SHIFT) | (addr & ~PUD_MASK);
		break;
	case PG_LEVEL_2M:
		*phys = ((phys_addr_t)pmd_pfn(*(pmd_t *)pte) << PAGE_SHIFT) | (addr & ~PMD_MASK);
		break;
	default:
		*phys = ((phys_addr_t)pte_pfn(*pte) << PAGE_SHIFT) | (addr & ~PAGE_MASK);
	}
	return true;
}

/* One run of struct pages that are physically contiguous, grown while the next fits. */
struct memmap_run {
	unsigned long pfn, count;
	phys_addr_t phys;
};

static void flush_run(struct collector *c, struct memmap_run *run)
{
	if (run->count)
		emit_line(c, "memmap %lx %lx %llx\n", run->pfn, run->count, (unsigned long long)run->phys);
	run->count = 0;
}

/* The struct pages of one zone, PAGE_SIZE of them at a time (a struct page never
 * straddles a page: its size divides PAGE_SIZE). */
static void describe_zone_memmap(struct collector *c, struct zone *zone, struct memmap_run *run)
{
	unsigned long per_page = PAGE_SIZE / sizeof(struct page);
	unsigned long pfn = ALIGN_DOWN(zone->zone_start_pfn, per_page);
	unsigned long end = zone_end_pfn(zone);

	for (; pfn < end; pfn += per_page) {
		phys_addr_t phys;

		if (!pfn_to_online_page(pfn) || !kernel_phys((unsigned long)pfn_to_page(pfn), &phys)) {
			flush_run(c, run);
			continue;
		}
		if (run->count && run->pfn + run->count == pfn && run->phys + run->count * sizeof(struct page) == phys) {
			run->count += per_page;
		} else if (run->count && run->pfn + run->count > pfn) {
			continue; /* zones sharing a page of struct pages: already described */
		} else {
			flush_run(c, run);
			run->pfn = pfn;
			run->count = per_page;
			run->phys = phys;
		}
		if ((pfn & 0xffff) == 0)
			cond_resched();
	}
}

static int pindex_order(unsigned int pindex)
{
	if (pindex >= NR_LOWORDER_PCP_LISTS)
		return pageblock_order;
	return pindex / MIGRATE_PCPTYPES;
}

static void describe_zone_pcp(struct collector *c, struct zone *zone)
{
	int cpu;
	unsigned int i;

	if (!zone->per_cpu_pageset)
		return;
	for_each_possible_cpu(cpu) {
		struct per_cpu_pages *pcp = per_cpu_ptr(zone->per_cpu_pageset, cpu);

		for (i = 0; i < NR_PCP_LISTS; i++) {
			phys_addr_t phys;

			if (kernel_phys((unsigned long)&pcp->lists[i], &phys))
				emit_line(c, "pcp %x %lx %llx\n", pindex_order(i), (unsigned long)&pcp->lists[i],
					  (unsigned long long)phys);
		}
	}
}

static void emit_check(struct collector *c, const void *field, unsigned long value)
{
	phys_addr_t phys;

	if (kernel_phys((unsigned long)field, &phys))
		emit_line(c, "check %llx %lx\n", (unsigned long long)phys, value);
}

/* Whether ADDR is the start of the kernel symbol NAME (an address the agent read from
 * /proc/kallsyms is trusted only once the kernel names it so). */
static bool is_symbol(unsigned long addr, const char *name)
{
	char buf[KSYM_SYMBOL_LEN];
	size_t n = strlen(name);

	if (!addr || !kernel_phys(addr, &(phys_addr_t){ 0 }))
		return false;
	sprint_symbol(buf, addr);
	return !strncmp(buf, name, n) && !strncmp(buf + n, "+0x0/", 5);
}

static void describe_swap_area(struct collector *c, int type, struct swap_info_struct **slot)
{
	struct swap_info_struct *si = READ_ONCE(*slot);
	struct rb_node *node;
	unsigned long first;

	if (!si || !percpu_ref_tryget_live(&si->users))
		return;
	if (!(si->flags & SWP_WRITEOK) || !si->bdev || !si->swap_map)
		goto out;
	emit_line(c, "swaparea %x %s %llx %x\n", type, si->bdev->bd_disk->disk_name,
		  (unsigned long long)si->bdev->bd_start_sect, si->max);
	for (node = rb_first(&si->swap_extent_root); node; node = rb_next(node)) {
		struct swap_extent *se = rb_entry(node, struct swap_extent, rb_node);

		emit_line(c, "swapextent %x %lx %lx %llx\n", type, se->start_page, se->nr_pages,
			  (unsigned long long)se->start_block);
	}
	for (first = 0; first < si->max;) {
		unsigned char *p = si->swap_map + first;
		size_t len = min_t(size_t, si->max - first, PAGE_SIZE - offset_in_page(p));
		phys_addr_t phys;

		if (kernel_phys((unsigned long)p, &phys))
			emit_line(c, "swapmap %x %lx %llx %zx\n", type, first, (unsigned long long)phys, len);
		first += len;
	}
	/* The host trusts the map only if, at the pause, the area is still this one. */
	emit_check(c, slot, (unsigned long)si);
	emit_check(c, &si->swap_map, (unsigned long)si->swap_map);
out:
	percpu_ref_put(&si->users);
}

static void describe_swap(struct collector *c, unsigned long swap_info_addr, unsigned long nr_addr)
{
	struct swap_info_struct **swap_info = (struct swap_info_struct **)swap_info_addr;
	unsigned int nr, type;

	emit_line(c, "swapshift %x\n", (unsigned int)SWP_TYPE_SHIFT);
	if (!is_symbol(swap_info_addr, "swap_info") || !is_symbol(nr_addr, "nr_swapfiles")) {
		emit_line(c, "noswap kallsyms\n");
		return;
	}
	nr = min_t(unsigned int, READ_ONCE(*(unsigned int *)nr_addr), MAX_SWAPFILES);
	smp_rmb();
	for (type = 0; type < nr; type++)
		describe_swap_area(c, type, &swap_info[type]);
}

int describe_memory(struct collector *c, unsigned long swap_info_addr, unsigned long nr_swapfiles_addr)
{
	struct memmap_run run = { 0 };
	int nid, z;

	emit_line(c, "page %zx %zx %zx %zx %zx %zx\n", sizeof(struct page), offsetof(struct page, flags),
		  offsetof(struct page, private), offsetof(struct page, page_type), offsetof(struct page, _refcount),
		  offsetof(struct page, pcp_list));
	emit_line(c, "buddy %x %x %x\n", PAGE_TYPE_BASE, PG_buddy, MAX_ORDER - 1);
	emit_line(c, "pageflags %x %x %x\n", PG_swapcache, PG_swapbacked, PG_head);
	emit_line(c, "vmemmap %lx\n", (unsigned long)pfn_to_page(0));
	emit_line(c, "poison %d\n", page_poisoning_enabled_static() ? 1 : 0);
	emit_line(c, "initonfree %d\n", want_init_on_free() ? 1 : 0);
	for_each_online_node(nid) {
		pg_data_t *pgdat = NODE_DATA(nid);

		for (z = 0; z < MAX_NR_ZONES; z++) {
			struct zone *zone = &pgdat->node_zones[z];

			if (!populated_zone(zone))
				continue;
			describe_zone_memmap(c, zone, &run);
			describe_zone_pcp(c, zone);
		}
	}
	flush_run(c, &run);
	describe_swap(c, swap_info_addr, nr_swapfiles_addr);
	return c->overflow ? -E2BIG : 0;
}

#else

int describe_memory(struct collector *c, unsigned long swap_info_addr, unsigned long nr_swapfiles_addr)
{
	return -EOPNOTSUPP;
}

#endif
